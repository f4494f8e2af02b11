/* Internal header of the zcopy addon.
 *
 * The addon is a thin syscall shim: every function does one syscall family
 * and returns a count >= 0 or a negative errno. Validation, policy, fallback
 * and error messages live in TypeScript (src/native.ts and above).
 */
#ifndef ZCOPY_H_
#define ZCOPY_H_

#include <node_api.h>
#include <stdint.h>

/* Each native file registers its functions on the exports object. */
napi_status zc__init_io(napi_env env, napi_value exports);
napi_status zc__init_poll(napi_env env, napi_value exports);
napi_status zc__init_file(napi_env env, napi_value exports);
napi_status zc__init_splice(napi_env env, napi_value exports);
napi_status zc__init_mmap(napi_env env, napi_value exports);
/* socket -> pipe -> file on the threadpool (receive.c): Linux only. */
napi_status zc__init_receive(napi_env env, napi_value exports);
/* CRC-32C of Kafka record batches (crc32c.c): portable, every platform. */
napi_status zc__init_crc32c(napi_env env, napi_value exports);
/* Blocking measurement loops of `zcopy bench` (bench.c): bench children only. */
napi_status zc__init_bench(napi_env env, napi_value exports);
/* preadv2(RWF_NOWAIT) and TCP_CORK for HTTP serving (http.c): every platform,
 * -EOPNOTSUPP where missing. */
napi_status zc__init_http(napi_env env, napi_value exports);

/* Per-environment state. The main thread and every worker thread has its
 * own (napi_set_instance_data), so the addon can be loaded in several at
 * once. A worker that ends (terminate(), process.exit()) tears its
 * environment down while zcopy may still hold poll handles and dup'd fds: an
 * async cleanup hook closes them, and Node waits for the handles' close
 * callbacks before it unloads the addon (addon.c, poll.c). */
struct zc__poller;
typedef struct zc__env {
  napi_env env;
  napi_async_cleanup_hook_handle hook; /* NULL once teardown finished */
  int stopping;                /* teardown began: no JS calls from C */
  int open_handles;            /* uv handles whose close callback is due */
  struct zc__poller* pollers;  /* live pollers (poll.c) */
  struct zc__turns* turns;     /* the poll-phase counter (http.c), NULL once closing */
  unsigned char* fds;          /* bitmap of fds zcopy owns (dup'd) */
  int fds_cap;                 /* bits in fds */
} zc__env;

/* This environment's state; NULL only if initialisation failed. */
zc__env* zc__env_get(napi_env env);
/* Records that fd belongs to zcopy (closed at teardown if still open);
 * zc__env_disown_fd forgets it (it is being closed). */
void zc__env_own_fd(napi_env env, int fd);
void zc__env_disown_fd(napi_env env, int fd);
/* A uv handle counted in open_handles finished closing. */
void zc__env_handle_closed(zc__env* e);
/* poll.c: uv_close every live poller (teardown). */
void zc__poll_teardown(zc__env* e);
/* Closes the poll-phase counter's handle (counted in open_handles). */
void zc__turns_teardown(zc__env* e);

/* Helpers shared by the native files (addon.c). */
napi_status zc__export(napi_env env, napi_value exports, const char* name,
                       napi_callback fn);
napi_value zc__num(napi_env env, double v);
napi_value zc__undefined(napi_env env);
/* Reads argument i as an int64 / int32 / buffer; returns 0 on success, or
 * throws a TypeError in JS and returns -1. JS validates before calling, so a
 * throw here means a bug in the TypeScript layer. */
int zc__arg_i64(napi_env env, napi_value v, int64_t* out);
int zc__arg_i32(napi_env env, napi_value v, int32_t* out);
int zc__arg_buf(napi_env env, napi_value v, void** data, size_t* len);

/* Runs fn(args) on libuv's threadpool and calls the JS function cb with its
 * result (a count or a negative errno). Used for syscalls that may block on
 * disk: the event loop must never wait for a cold page cache. */
typedef int64_t (*zc__job_fn)(const int64_t* args);
napi_value zc__queue_job(napi_env env, napi_value cb, zc__job_fn fn,
                         const int64_t* args, int nargs);

/* One sendfile(2) call, EINTR retried: bytes moved (0: the file ended) or
 * -errno (io.c; the pump of poll.c calls it too). */
int64_t zc__sendfile(int out_fd, int in_fd, int64_t offset, int64_t count);

/* Fetches exactly n arguments into argv (missing ones are undefined). */
#define ZC_ARGS(n)                                                           \
  size_t argc = (n);                                                         \
  napi_value argv[(n) > 0 ? (n) : 1];                                        \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)       \
    return NULL

#define ZC_I64(i, name)                                                      \
  int64_t name;                                                              \
  if (zc__arg_i64(env, argv[i], &name) != 0) return NULL

#define ZC_I32(i, name)                                                      \
  int32_t name;                                                              \
  if (zc__arg_i32(env, argv[i], &name) != 0) return NULL

#endif  /* ZCOPY_H_ */
