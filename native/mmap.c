/* Memory-mapped files (issue #4).
 *
 * A mapping is a zc__map owned by a JS handle (a napi external). JS sees its
 * bytes only through views: external ArrayBuffers over a range of the
 * mapping. Closing detaches every view (napi_detach_arraybuffer, done by the
 * TS layer) so views become zero-length instead of dangling; the memory is
 * unmapped only when nothing can reach it any more: the handle is closed (or
 * collected), every view's backing store is gone, and no threadpool job
 * (msync, a populating mmap) still uses it. Those reasons are counted in
 * `pins`; the struct itself lives while anything holds a pointer (`refs`).
 * Both counts are atomic because jobs release theirs on a pool thread.
 *
 * Like the other native files this is a shim: prot/flags/advice values are
 * chosen by TS from mmapConstants(), and every function returns a count >= 0
 * or a negative errno. */
#include "zcopy.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Returned (negated) instead of an errno when the runtime refuses external
 * buffers (napi_no_external_buffers_allowed, e.g. Electron's V8 sandbox).
 * Far above any errno, so TS cannot confuse it with a syscall failure. */
#define ZC_ENOEXTBUF 100001

typedef struct {
  uint8_t* base;    /* page-aligned start of the mapping; NULL until mapped */
  size_t maplen;    /* bytes mapped from base */
  size_t delta;     /* caller's offset minus the page-aligned offset */
  size_t len;       /* the caller's length: views index [0, len) */
  atomic_int pins;  /* open handle + live views + jobs: keep the mapping */
  atomic_int refs;  /* handle object + live views + jobs: keep this struct */
  int closed;       /* mmapClose ran or the handle was collected (JS thread) */
} zc__map;

/* One per view, as the finalize hint: the finalizer needs the length to
 * undo the external memory accounting. */
typedef struct {
  zc__map* map;
  size_t len;
  int accounted;  /* napi_adjust_external_memory(+len) ran */
} zc__view;

static size_t zc__page;

static void zc__map_unref(zc__map* m) {
  if (atomic_fetch_sub(&m->refs, 1) == 1) free(m);
}

static void zc__map_unpin(zc__map* m) {
  /* munmap is thread-safe; the last pin may be a job on a pool thread. */
  if (atomic_fetch_sub(&m->pins, 1) == 1 && m->base != NULL) {
    munmap(m->base, m->maplen);
    m->base = NULL;
  }
}

static void zc__map_hold(zc__map* m) {
  atomic_fetch_add(&m->pins, 1);
  atomic_fetch_add(&m->refs, 1);
}

static void zc__map_drop(zc__map* m) {
  zc__map_unpin(m);
  zc__map_unref(m);
}

/* Returns the zc__map of handle v, or NULL after throwing (a TS bug). */
static zc__map* zc__arg_map(napi_env env, napi_value v) {
  void* p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "zcopy native: expected a mapping");
    return NULL;
  }
  return p;
}

/* The handle was collected: a mapping never closed is unmapped once its
 * views are gone too. */
static void zc__map_finalize(napi_env env, void* data, void* hint) {
  zc__map* m = data;
  if (!m->closed) {
    m->closed = 1;
    zc__map_unpin(m);
  }
  zc__map_unref(m);
}

/* mmapNew() -> handle. The handle starts unmapped; mmap or mmapAsync fills
 * it. Two steps so that a populating mmap can run on the threadpool and the
 * JS handle still exists before it starts. */
static napi_value zc_mmap_new(napi_env env, napi_callback_info info) {
  zc__map* m = calloc(1, sizeof(*m));
  if (m == NULL) return zc__num(env, -ENOMEM);
  atomic_init(&m->pins, 1);
  atomic_init(&m->refs, 1);
  napi_value h;
  if (napi_create_external(env, m, zc__map_finalize, NULL, &h) != napi_ok) {
    free(m);
    return zc__num(env, -ENOMEM);
  }
  return h;
}

/* Maps [offset, offset + length) of fd into m. mmap needs a page-aligned
 * file offset, so the mapping starts at the page holding `offset` and
 * views skip the `delta` bytes before it. */
static int64_t zc__map_do(zc__map* m, int fd, int64_t offset, int64_t length,
                          int prot, int flags) {
  if (offset < 0 || length <= 0 || m->base != NULL) return -EINVAL;
  int64_t aligned = offset & ~(int64_t)(zc__page - 1);
  size_t delta = (size_t)(offset - aligned);
  if ((uint64_t)length > SIZE_MAX - delta) return -EOVERFLOW;
  size_t maplen = (size_t)length + delta;
  void* p = mmap(NULL, maplen, prot, flags, fd, (off_t)aligned);
  if (p == MAP_FAILED) return -errno;
  m->maplen = maplen;
  m->delta = delta;
  m->len = (size_t)length;
  m->base = p;
  return 0;
}

/* mmap(handle, fd, offset, length, prot, flags) -> 0 | -errno */
static napi_value zc_mmap(napi_env env, napi_callback_info info) {
  ZC_ARGS(6);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  ZC_I32(1, fd);
  ZC_I64(2, offset);
  ZC_I64(3, length);
  ZC_I32(4, prot);
  ZC_I32(5, flags);
  if (m->closed) return zc__num(env, -EBADF);
  return zc__num(env, (double)zc__map_do(m, fd, offset, length, prot, flags));
}

/* a: map, fd, offset, length, prot, flags. MAP_POPULATE reads the whole
 * range in before mmap returns: that wait belongs on a pool thread. */
static int64_t zc__mmap_job(const int64_t* a) {
  zc__map* m = (zc__map*)(intptr_t)a[0];
  int64_t r = zc__map_do(m, (int)a[1], a[2], a[3], (int)a[4], (int)a[5]);
  zc__map_drop(m);
  return r;
}

/* mmapAsync(handle, fd, offset, length, prot, flags, cb(0 | -errno)).
 * The TS layer must not touch the handle until cb runs. */
static napi_value zc_mmap_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(7);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  int64_t a[6];
  a[0] = (int64_t)(intptr_t)m;
  for (int i = 1; i < 6; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  if (m->closed) return zc__num(env, -EBADF);
  zc__map_hold(m);
  napi_value r = zc__queue_job(env, argv[6], zc__mmap_job, a, 6);
  if (r == NULL) zc__map_drop(m);
  return r;
}

/* A view's backing store is gone: collected, or detached by close(). Node
 * runs this on the JS thread, so the accounting can be undone here. */
static void zc__view_finalize(napi_env env, void* data, void* hint) {
  zc__view* v = hint;
  int64_t ignored;
  if (v->accounted)
    napi_adjust_external_memory(env, -(int64_t)v->len, &ignored);
  zc__map_drop(v->map);
  free(v);
}

/* mmapView(handle, start, length) -> ArrayBuffer over [start, start+length)
 * of the caller's range | -errno | -ZC_ENOEXTBUF. */
static napi_value zc_mmap_view(napi_env env, napi_callback_info info) {
  ZC_ARGS(3);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  ZC_I64(1, start);
  ZC_I64(2, length);
  if (m->closed || m->base == NULL) return zc__num(env, -EBADF);
  if (start < 0 || length <= 0 || (uint64_t)start > m->len ||
      (uint64_t)length > m->len - (uint64_t)start)
    return zc__num(env, -EINVAL);
  zc__view* v = malloc(sizeof(*v));
  if (v == NULL) return zc__num(env, -ENOMEM);
  v->map = m;
  v->len = (size_t)length;
  v->accounted = 0;
  zc__map_hold(m);
  napi_value ab;
  napi_status s = napi_create_external_arraybuffer(
      env, m->base + m->delta + start, (size_t)length, zc__view_finalize, v,
      &ab);
  if (s == napi_no_external_buffers_allowed || s == napi_invalid_arg) {
    /* Refused before Node took the finalizer: the cleanup is ours. */
    zc__map_drop(m);
    free(v);
    return zc__num(env, s == napi_no_external_buffers_allowed ? -ZC_ENOEXTBUF
                                                              : -EINVAL);
  }
  if (s != napi_ok) {
    /* Node took the finalizer and has run it (or will): node::Buffer::New
     * calls it when creation fails, e.g. above Node 20's 4 GiB Buffer limit,
     * and leaves an exception pending that TS must not see. */
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
    }
    return zc__num(env, -EOVERFLOW);
  }
  v->accounted = 1;
  int64_t ignored;
  napi_adjust_external_memory(env, (int64_t)length, &ignored);
  return ab;
}

/* mmapDetach(arrayBuffer) -> 0 | -EINVAL. Every view over it becomes
 * zero-length; the backing store's finalizer then releases the mapping. */
static napi_value zc_mmap_detach(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, argv[0], &detached) != napi_ok)
    return zc__num(env, -EINVAL);
  if (detached) return zc__num(env, 0);
  return zc__num(env, napi_detach_arraybuffer(env, argv[0]) == napi_ok
                          ? 0 : -EINVAL);
}

/* mmapClose(handle) -> 0. Releases the handle's pin; views must have been
 * detached first or they keep the memory mapped until collected. */
static napi_value zc_mmap_close(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  if (!m->closed) {
    m->closed = 1;
    zc__map_unpin(m);
  }
  return zc__num(env, 0);
}

/* madvise and msync need a page-aligned address: round the start of
 * [start, start+length) down to its page and grow the length to match. */
static int zc__range(zc__map* m, int64_t start, int64_t length,
                     uint8_t** addr, size_t* len) {
  if (start < 0 || length < 0 || (uint64_t)start > m->len ||
      (uint64_t)length > m->len - (uint64_t)start)
    return -EINVAL;
  size_t from = m->delta + (size_t)start;
  size_t head = from & (zc__page - 1);
  *addr = m->base + from - head;
  *len = (size_t)length + head;
  return 0;
}

/* madvise(handle, start, length, advice) -> 0 | -errno */
static napi_value zc_madvise(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  ZC_I64(1, start);
  ZC_I64(2, length);
  ZC_I32(3, advice);
  if (m->closed || m->base == NULL) return zc__num(env, -EBADF);
  uint8_t* addr;
  size_t len;
  int r = zc__range(m, start, length, &addr, &len);
  if (r == 0 && madvise(addr, len, advice) < 0) r = -errno;
  return zc__num(env, r);
}

/* a: map, start, length, flags. The job holds a pin, so a close() while
 * msync runs cannot unmap the range under it. */
static int64_t zc__msync_job(const int64_t* a) {
  zc__map* m = (zc__map*)(intptr_t)a[0];
  uint8_t* addr;
  size_t len;
  int r = zc__range(m, a[1], a[2], &addr, &len);
  if (r == 0 && msync(addr, len, (int)a[3]) < 0) r = -errno;
  zc__map_drop(m);
  return r;
}

/* msyncAsync(handle, start, length, flags, cb(0 | -errno)) -> undefined, or
 * -errno without calling cb when the mapping is closed. */
static napi_value zc_msync_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(5);
  zc__map* m = zc__arg_map(env, argv[0]);
  if (m == NULL) return NULL;
  int64_t a[4];
  a[0] = (int64_t)(intptr_t)m;
  for (int i = 1; i < 4; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  if (m->closed || m->base == NULL) return zc__num(env, -EBADF);
  zc__map_hold(m);
  napi_value r = zc__queue_job(env, argv[4], zc__msync_job, a, 4);
  if (r == NULL) zc__map_drop(m);
  return r;
}

/* mmapConstants() -> the numbers TS passes back as prot, flags, advice. */
static napi_value zc_mmap_constants(napi_env env, napi_callback_info info) {
  napi_value o;
  napi_create_object(env, &o);
  struct { const char* k; double v; } c[] = {
    {"PAGE_SIZE", (double)zc__page},
    {"PROT_READ", PROT_READ}, {"PROT_WRITE", PROT_WRITE},
    {"MAP_SHARED", MAP_SHARED}, {"MAP_PRIVATE", MAP_PRIVATE},
    {"MAP_POPULATE", MAP_POPULATE},
    {"MADV_NORMAL", MADV_NORMAL}, {"MADV_SEQUENTIAL", MADV_SEQUENTIAL},
    {"MADV_RANDOM", MADV_RANDOM}, {"MADV_WILLNEED", MADV_WILLNEED},
    {"MADV_DONTNEED", MADV_DONTNEED},
    {"MS_SYNC", MS_SYNC}, {"MS_ASYNC", MS_ASYNC},
    {"E_NO_EXTERNAL_BUFFERS", -ZC_ENOEXTBUF},
  };
  for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
    napi_set_named_property(env, o, c[i].k, zc__num(env, c[i].v));
  return o;
}

napi_status zc__init_mmap(napi_env env, napi_value exports) {
  static const struct { const char* name; napi_callback fn; } fns[] = {
    {"mmapNew", zc_mmap_new},       {"mmap", zc_mmap},
    {"mmapAsync", zc_mmap_async},   {"mmapView", zc_mmap_view},
    {"mmapDetach", zc_mmap_detach}, {"mmapClose", zc_mmap_close},
    {"madvise", zc_madvise},        {"msyncAsync", zc_msync_async},
    {"mmapConstants", zc_mmap_constants},
  };
  long ps = sysconf(_SC_PAGESIZE);
  zc__page = ps > 0 ? (size_t)ps : 4096;
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_status s = zc__export(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
