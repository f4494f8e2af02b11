/* Module entry point and the small helpers every native file shares. */
#include "zcopy.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

napi_status zc__export(napi_env env, napi_value exports, const char* name,
                       napi_callback fn) {
  napi_value f;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL,
                                       &f);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, name, f);
}

napi_value zc__num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

napi_value zc__undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

int zc__arg_i64(napi_env env, napi_value v, int64_t* out) {
  /* Doubles carry every integer up to 2^53 - 1 exactly, which is the largest
   * offset JS can name; napi_get_value_int64 truncates fractions, but the TS
   * layer rejects those before calling. */
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "zcopy native: expected a number");
    return -1;
  }
  return 0;
}

int zc__arg_i32(napi_env env, napi_value v, int32_t* out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "zcopy native: expected an int32");
    return -1;
  }
  return 0;
}

int zc__arg_buf(napi_env env, napi_value v, void** data, size_t* len) {
  bool ok = false;
  if (napi_is_buffer(env, v, &ok) == napi_ok && ok)
    return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
  if (napi_is_typedarray(env, v, &ok) == napi_ok && ok) {
    napi_typedarray_type t;
    size_t n;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, v, &t, &n, data, &ab, &off) == napi_ok &&
        t == napi_uint8_array) {
      *len = n;
      return 0;
    }
  }
  napi_throw_type_error(env, NULL, "zcopy native: expected a Buffer");
  return -1;
}

/* ---- per-environment state and teardown ---------------------------------- */

zc__env* zc__env_get(napi_env env) {
  void* data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return data;
}

void zc__env_own_fd(napi_env env, int fd) {
  zc__env* e = zc__env_get(env);
  if (e == NULL || fd < 0) return;
  if (fd >= e->fds_cap) {
    int cap = e->fds_cap > 0 ? e->fds_cap : 1024;
    while (cap <= fd) cap *= 2;
    unsigned char* b = realloc(e->fds, (size_t)cap / 8);
    /* Without memory the fd is only not closed at teardown. */
    if (b == NULL) return;
    memset(b + e->fds_cap / 8, 0, (size_t)(cap - e->fds_cap) / 8);
    e->fds = b;
    e->fds_cap = cap;
  }
  e->fds[fd / 8] |= (unsigned char)(1u << (fd % 8));
}

void zc__env_disown_fd(napi_env env, int fd) {
  zc__env* e = zc__env_get(env);
  if (e == NULL || fd < 0 || fd >= e->fds_cap) return;
  e->fds[fd / 8] &= (unsigned char)~(1u << (fd % 8));
}

static void zc__env_finish(zc__env* e) {
  if (e->hook == NULL) return;
  /* Every fd zcopy still owns: a dup kept alive would hold the connection
   * open after Node closed its own socket. No threadpool job can be using
   * one: Node waits for queued work before it runs cleanup hooks. */
  for (int fd = 0; fd < e->fds_cap; fd++)
    if (e->fds[fd / 8] & (1u << (fd % 8))) close(fd);
  if (e->fds != NULL) memset(e->fds, 0, (size_t)e->fds_cap / 8);
  napi_async_cleanup_hook_handle h = e->hook;
  e->hook = NULL;
  /* Node waits for this before it frees the environment and unloads us. */
  napi_remove_async_cleanup_hook(h);
}

void zc__env_handle_closed(zc__env* e) {
  e->open_handles--;
  if (e->stopping && e->open_handles == 0) zc__env_finish(e);
}

static void zc__env_cleanup(napi_async_cleanup_hook_handle h, void* data) {
  zc__env* e = data;
  e->stopping = 1;
  /* Close callbacks must run while the addon is still loaded: uv_close now,
   * and finish (which lets Node go on) when the last one ran. */
  zc__poll_teardown(e);
  zc__turns_teardown(e);
  if (e->open_handles == 0) zc__env_finish(e);
}

static void zc__env_free(napi_env env, void* data, void* hint) {
  zc__env* e = data;
  free(e->fds);
  free(e);
}

static napi_status zc__env_init(napi_env env) {
  zc__env* e = calloc(1, sizeof(*e));
  if (e == NULL) return napi_generic_failure;
  e->env = env;
  napi_status s = napi_set_instance_data(env, e, zc__env_free, NULL);
  if (s != napi_ok) {
    free(e);
    return s;
  }
  return napi_add_async_cleanup_hook(env, zc__env_cleanup, e, &e->hook);
}

static napi_value zc__init(napi_env env, napi_value exports) {
  if (zc__env_init(env) != napi_ok ||
      zc__init_io(env, exports) != napi_ok ||
      zc__init_poll(env, exports) != napi_ok ||
      zc__init_file(env, exports) != napi_ok ||
      zc__init_splice(env, exports) != napi_ok ||
      zc__init_mmap(env, exports) != napi_ok ||
      zc__init_crc32c(env, exports) != napi_ok ||
      zc__init_receive(env, exports) != napi_ok ||
      zc__init_bench(env, exports) != napi_ok ||
      zc__init_http(env, exports) != napi_ok) {
    napi_throw_error(env, NULL, "zcopy native: initialisation failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, zc__init)
