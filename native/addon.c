/* Module entry point and the small helpers every native file shares. */
#include "zcopy.h"

#include <string.h>

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

static napi_value zc__init(napi_env env, napi_value exports) {
  if (zc__init_io(env, exports) != napi_ok ||
      zc__init_poll(env, exports) != napi_ok ||
      zc__init_file(env, exports) != napi_ok ||
      zc__init_splice(env, exports) != napi_ok ||
      zc__init_mmap(env, exports) != napi_ok ||
      zc__init_crc32c(env, exports) != napi_ok ||
      zc__init_receive(env, exports) != napi_ok ||
      zc__init_bench(env, exports) != napi_ok) {
    napi_throw_error(env, NULL, "zcopy native: initialisation failed");
    return NULL;
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, zc__init)
