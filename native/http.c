/* HTTP serving helpers: a read that never waits for the disk, TCP_CORK
 * around a head and the first bytes of a zero-copy body, and an fstat of
 * the fields that say whether a cached file changed.
 *
 * All are thin syscall wrappers returning a count or a negative errno;
 * when to use them is decided in src/http/ (body.ts, open-file-cache.ts). */
#include "zcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __linux__
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#endif

/* preadNowait(fd, buf, bufOffset, length, position) -> n | -errno.
 * preadv2(RWF_NOWAIT): reads what the page cache holds and fails with
 * EAGAIN instead of waiting for the disk, so a small cached body is read on
 * the event loop with no threadpool round trip. -EOPNOTSUPP where the
 * kernel, libc or filesystem lacks it (the caller then uses the pool). */
static napi_value zc_pread_nowait(napi_env env, napi_callback_info info) {
  ZC_ARGS(5);
  ZC_I32(0, fd);
  void* data;
  size_t len;
  if (zc__arg_buf(env, argv[1], &data, &len) != 0) return NULL;
  ZC_I64(2, boff);
  ZC_I64(3, n);
  ZC_I64(4, pos);
  if (boff < 0 || n < 0 || (uint64_t)(boff + n) > len)
    return zc__num(env, -EINVAL);
#if defined(__linux__) && defined(RWF_NOWAIT)
  struct iovec iov = {(char*)data + boff, (size_t)n};
  ssize_t r;
  do
    r = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  return zc__num(env, r < 0 ? -errno : (double)r);
#else
  return zc__num(env, -EOPNOTSUPP);
#endif
}

/* setCork(fd, on) -> 0 | -errno. TCP_CORK (nginx's tcp_nopush): while on,
 * the kernel sends only full segments, so a head written before a sendfile
 * leaves in the same packet as the first file bytes; turning it off sends
 * what is left at once. ENOPROTOOPT/EOPNOTSUPP on a Unix socket. */
static napi_value zc_set_cork(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I32(1, on);
#if defined(__linux__) && defined(TCP_CORK)
  int v = on ? 1 : 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, sizeof v) != 0)
    return zc__num(env, -errno);
  return zc__num(env, 0);
#else
  return zc__num(env, -EOPNOTSUPP);
#endif
}

/* fstatId(fd, out) -> 0 | -errno. Writes eight doubles into `out` (a
 * Buffer of at least 64 bytes, read through a Float64Array view): dev,
 * ino, size, nlink, mtime s, mtime ns, ctime s, ctime ns. The open-file
 * cache compares them with the previous hit's to reuse its fs.Stats: the
 * syscall is the same as fs.fstatSync's, the Stats object (and its four
 * Dates) is what a hit would otherwise build each time. */
static napi_value zc_fstat_id(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  void* data;
  size_t len;
  if (zc__arg_buf(env, argv[1], &data, &len) != 0) return NULL;
  if (len < 8 * sizeof(double) || ((uintptr_t)data % sizeof(double)) != 0)
    return zc__num(env, -EINVAL);
#ifdef __linux__
  struct stat st;
  if (fstat(fd, &st) != 0) return zc__num(env, -errno);
  double* o = data;
  o[0] = (double)st.st_dev;
  o[1] = (double)st.st_ino;
  o[2] = (double)st.st_size;
  o[3] = (double)st.st_nlink;
  o[4] = (double)st.st_mtim.tv_sec;
  o[5] = (double)st.st_mtim.tv_nsec;
  o[6] = (double)st.st_ctim.tv_sec;
  o[7] = (double)st.st_ctim.tv_nsec;
  return zc__num(env, 0);
#else
  return zc__num(env, -EOPNOTSUPP);
#endif
}

/* loopTurn() -> n: how many poll phases this environment's event loop has
 * entered. A uv_prepare handle (unref'd: it never keeps the loop alive)
 * adds one just before each poll, so every callback of one poll phase, and
 * everything after it until the next poll (check, close, the next timers),
 * reads the same number, and a request read in a later poll phase reads a
 * larger one. The open-file cache reuses the file-system checks of one
 * number (src/http/open-file-cache.ts: loopTurn). */
typedef struct zc__turns {
  uv_prepare_t handle;
  double count;
  zc__env* e;
} zc_turns;

static void zc__turn_tick(uv_prepare_t* h) { ((zc_turns*)h->data)->count += 1; }

/* The close callback runs while the addon is still loaded: the handle is
 * counted in the environment's open_handles, and Node's teardown waits for
 * it (addon.c, async cleanup hook). */
static void zc__turn_closed(uv_handle_t* h) {
  zc_turns* t = h->data;
  zc__env* e = t->e;
  free(t);
  zc__env_handle_closed(e);
}

void zc__turns_teardown(zc__env* e) {
  zc_turns* t = e->turns;
  if (t == NULL) return;
  e->turns = NULL;
  uv_prepare_stop(&t->handle);
  uv_close((uv_handle_t*)&t->handle, zc__turn_closed);
}

/* NaN once the counter is closing (never equal to itself: every hit checks). */
static napi_value zc_loop_turn(napi_env env, napi_callback_info info) {
  (void)info;
  zc__env* e = zc__env_get(env);
  if (e == NULL || e->turns == NULL) return zc__num(env, 0.0 / 0.0);
  return zc__num(env, e->turns->count);
}

static napi_status zc__init_turns(napi_env env, napi_value exports) {
  zc__env* e = zc__env_get(env);
  uv_loop_t* loop;
  /* No counter: JS then checks on every hit. */
  if (e == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return napi_ok;
  zc_turns* t = calloc(1, sizeof *t);
  if (t == NULL) return napi_ok;
  if (uv_prepare_init(loop, &t->handle) != 0) {
    free(t);
    return napi_ok;
  }
  t->e = e;
  t->handle.data = t;
  e->turns = t;
  e->open_handles++;
  uv_prepare_start(&t->handle, zc__turn_tick);
  uv_unref((uv_handle_t*)&t->handle);
  return zc__export(env, exports, "loopTurn", zc_loop_turn);
}

napi_status zc__init_http(napi_env env, napi_value exports) {
  napi_status s0 = zc__init_turns(env, exports);
  if (s0 != napi_ok) return s0;
  napi_status s = zc__export(env, exports, "preadNowait", zc_pread_nowait);
  if (s != napi_ok) return s;
  s = zc__export(env, exports, "fstatId", zc_fstat_id);
  if (s != napi_ok) return s;
  return zc__export(env, exports, "setCork", zc_set_cork);
}
