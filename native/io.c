/* Socket-side I/O: sendfile, pread/write for the native copy path, and the
 * fd plumbing the TypeScript layer needs (dup, close, flags, socket info).
 * Every function returns a count >= 0 or a negative errno. */
#include "zcopy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Linux moves at most this much per sendfile call (MAX_RW_COUNT). */
#define ZC_MAX_RW 0x7ffff000LL

/* ---- threadpool jobs ---------------------------------------------------- */

typedef struct {
  napi_async_work work;
  napi_ref cb;
  zc__job_fn fn;
  int64_t args[6];
  int64_t result;
} zc__job;

static void zc__job_execute(napi_env env, void* data) {
  zc__job* job = data;
  job->result = job->fn(job->args);
}

static void zc__job_complete(napi_env env, napi_status status, void* data) {
  zc__job* job = data;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, arg;
  napi_get_reference_value(env, job->cb, &cb);
  napi_get_global(env, &global);
  /* A cancelled job reports ECANCELED like libuv does. */
  arg = zc__num(env, status == napi_cancelled ? -ECANCELED
                                              : (double)job->result);
  napi_delete_reference(env, job->cb);
  napi_delete_async_work(env, job->work);
  free(job);
  /* napi_call_function from a completion callback runs inside Node's callback
   * scope, so microtasks queued by cb run when it returns. */
  if (cb != NULL) {
    napi_status s = napi_call_function(env, global, cb, 1, &arg, NULL);
    if (s == napi_pending_exception) {
      napi_value err;
      napi_valuetype t = napi_undefined;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok)
        napi_typeof(env, err, &t);
      /* Nothing thrown: the environment is shutting down (a worker that
       * ended while this job ran) and can no longer run JS. Node waits for
       * queued work before its cleanup hooks, so this callback still runs
       * during teardown; there is nobody left to tell. */
      if (t != napi_undefined) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

napi_value zc__queue_job(napi_env env, napi_value cb, zc__job_fn fn,
                         const int64_t* args, int nargs) {
  zc__job* job = calloc(1, sizeof(*job));
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "zcopy native: out of memory");
    return NULL;
  }
  job->fn = fn;
  memcpy(job->args, args, sizeof(int64_t) * (size_t)nargs);
  napi_value name;
  napi_create_string_utf8(env, "zcopy:job", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, cb, 1, &job->cb) != napi_ok ||
      napi_create_async_work(env, NULL, name, zc__job_execute,
                             zc__job_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    free(job);
    napi_throw_error(env, NULL, "zcopy native: cannot queue work");
    return NULL;
  }
  return zc__undefined(env);
}

/* ---- sendfile ----------------------------------------------------------- */

/* One sendfile call; the TS layer (or a pump, poll.c) loops. Returns bytes
 * moved (0 means the file ended before count: truncation when bytes were
 * owed). */
int64_t zc__sendfile(int out_fd, int in_fd, int64_t offset,
                            int64_t count) {
  off_t off = (off_t)offset;
  if (count > ZC_MAX_RW) count = ZC_MAX_RW;
  ssize_t n;
  do
    n = sendfile(out_fd, in_fd, &off, (size_t)count);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : (int64_t)n;
}

/* sendfile(outFd, inFd, offset, count) -> n | -errno */
static napi_value zc_sendfile(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, out_fd);
  ZC_I32(1, in_fd);
  ZC_I64(2, offset);
  ZC_I64(3, count);
  return zc__num(env, (double)zc__sendfile(out_fd, in_fd, offset, count));
}

/* Loops sendfile on the threadpool until count is moved, the socket would
 * block, or an error: a cold page cache stalls this thread, not the loop. */
static int64_t zc__sendfile_job(const int64_t* a) {
  int64_t done = 0;
  while (done < a[3]) {
    int64_t n = zc__sendfile((int)a[0], (int)a[1], a[2] + done, a[3] - done);
    if (n == 0) break;
    if (n < 0) return done > 0 ? done : n;
    done += n;
  }
  return done;
}

/* sendfileAsync(outFd, inFd, offset, count, cb(n | -errno)) */
static napi_value zc_sendfile_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(5);
  int64_t a[4];
  for (int i = 0; i < 4; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  return zc__queue_job(env, argv[4], zc__sendfile_job, a, 4);
}

/* ---- pread / write: the native copy path -------------------------------- */

/* pread(fd, buf, bufOffset, length, position) -> n | -errno */
static napi_value zc_pread(napi_env env, napi_callback_info info) {
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
  ssize_t r;
  do
    r = pread(fd, (char*)data + boff, (size_t)n, (off_t)pos);
  while (r < 0 && errno == EINTR);
  return zc__num(env, r < 0 ? -errno : (double)r);
}

/* write(fd, buf, bufOffset, length) -> n | -errno. Sockets get send() with
 * MSG_NOSIGNAL|MSG_DONTWAIT so a closed peer is EPIPE, never a signal, and a
 * full buffer is EAGAIN even on a blocking fd. */
static napi_value zc_write(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, fd);
  void* data;
  size_t len;
  if (zc__arg_buf(env, argv[1], &data, &len) != 0) return NULL;
  ZC_I64(2, boff);
  ZC_I64(3, n);
  if (boff < 0 || n < 0 || (uint64_t)(boff + n) > len)
    return zc__num(env, -EINVAL);
  ssize_t r;
  do
    r = send(fd, (char*)data + boff, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == ENOTSOCK) {
    do
      r = write(fd, (char*)data + boff, (size_t)n);
    while (r < 0 && errno == EINTR);
  }
  return zc__num(env, r < 0 ? -errno : (double)r);
}

/* spliceFile(fileFd, offset, pipeFd, len) -> n | -errno: file pages into a
 * pipe at an explicit offset (the file position is untouched), for the
 * file -> pipe -> socket mechanism. May wait for disk: callers check the
 * page cache first. */
static napi_value zc_splice_file(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, in_fd);
  ZC_I64(1, offset);
  ZC_I32(2, pipe_fd);
  ZC_I64(3, len);
  loff_t off = (loff_t)offset;
  if (len > ZC_MAX_RW) len = ZC_MAX_RW;
  ssize_t n;
  do
    n = splice(in_fd, &off, pipe_fd, NULL, (size_t)len,
               SPLICE_F_NONBLOCK | SPLICE_F_MORE);
  while (n < 0 && errno == EINTR);
  return zc__num(env, n < 0 ? -errno : (double)n);
}

/* ---- fd plumbing --------------------------------------------------------- */

/* dup(fd) -> newfd | -errno; the copy is close-on-exec. */
static napi_value zc_dup(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  /* Owned by zcopy: closed at teardown if the TS layer never got to. */
  if (r >= 0) zc__env_own_fd(env, r);
  return zc__num(env, r < 0 ? -errno : r);
}

/* close(fd) -> 0 | -errno. EINTR still closed the fd on Linux. */
static napi_value zc_close(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  zc__env_disown_fd(env, fd);
  int r = close(fd);
  return zc__num(env, r < 0 && errno != EINTR ? -errno : 0);
}

/* sendBuffer(fd, bytes) -> SO_SNDBUF as the kernel now has it | -errno.
 * bytes > 0 asks for that size first (Linux doubles it for bookkeeping and
 * caps the request at net.core.wmem_max); 0 only reads it. */
static napi_value zc_send_buffer(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I32(1, bytes);
  if (bytes > 0 &&
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)) < 0)
    return zc__num(env, -errno);
  int v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) < 0)
    return zc__num(env, -errno);
  return zc__num(env, v);
}

/* getFl(fd) -> flags | -errno; setFl(fd, flags) -> 0 | -errno */
static napi_value zc_get_fl(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int r = fcntl(fd, F_GETFL);
  return zc__num(env, r < 0 ? -errno : r);
}

static napi_value zc_set_fl(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I32(1, fl);
  int r = fcntl(fd, F_SETFL, fl);
  return zc__num(env, r < 0 ? -errno : 0);
}

/* lseek(fd, offset) -> new offset | -errno (SEEK_SET). copyFile's sendfile
 * stage writes at the destination's file position. */
static napi_value zc_lseek(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I64(1, off);
  off_t r = lseek(fd, (off_t)off, SEEK_SET);
  return zc__num(env, r < 0 ? -errno : (double)r);
}

/* shutdown(fd, how) -> 0 | -errno */
static napi_value zc_shutdown(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I32(1, how);
  int r = shutdown(fd, how);
  return zc__num(env, r < 0 ? -errno : 0);
}

/* fstatKind(fd) -> S_IFMT bits | -errno: lets TS tell sockets from files
 * for raw fds without a round trip through fs. */
static napi_value zc_fstat_kind(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  struct stat st;
  if (fstat(fd, &st) < 0) return zc__num(env, -errno);
  return zc__num(env, st.st_mode & S_IFMT);
}

/* sockInfo(fd) -> [type, listening, family, connected, peerIsLoopback]
 * or -errno. The TS layer decides what is acceptable. */
static napi_value zc_sock_info(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int type = 0, listening = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
    return zc__num(env, -errno);
  len = sizeof(listening);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
    listening = 0;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  int family = -1, connected = 0, loopback = 0;
  if (getsockname(fd, (struct sockaddr*)&ss, &sl) == 0) family = ss.ss_family;
  sl = sizeof(ss);
  if (getpeername(fd, (struct sockaddr*)&ss, &sl) == 0) {
    connected = 1;
    if (ss.ss_family == AF_INET) {
      const struct sockaddr_in* in4 = (const struct sockaddr_in*)&ss;
      loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    } else if (ss.ss_family == AF_INET6) {
      const struct sockaddr_in6* in6 = (const struct sockaddr_in6*)&ss;
      loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                 (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                  in6->sin6_addr.s6_addr[12] == 127);
    } else if (ss.ss_family == AF_UNIX) {
      loopback = 1;
    }
  }
  napi_value arr;
  napi_create_array_with_length(env, 5, &arr);
  int vals[5] = {type, listening != 0, family, connected, loopback};
  for (uint32_t i = 0; i < 5; i++)
    napi_set_element(env, arr, i, zc__num(env, vals[i]));
  return arr;
}

/* constants() -> the numbers the TS layer compares against. */
static napi_value zc_constants(napi_env env, napi_callback_info info) {
  napi_value o;
  napi_create_object(env, &o);
  struct { const char* k; double v; } c[] = {
    {"SOCK_STREAM", SOCK_STREAM}, {"AF_UNIX", AF_UNIX},
    {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6},
    {"S_IFMT", S_IFMT}, {"S_IFREG", S_IFREG}, {"S_IFSOCK", S_IFSOCK},
    {"S_IFDIR", S_IFDIR}, {"O_NONBLOCK", O_NONBLOCK},
    {"O_APPEND", O_APPEND}, {"SHUT_WR", SHUT_WR}, {"SHUT_RDWR", SHUT_RDWR},
    {"MAX_RW", (double)ZC_MAX_RW},
  };
  for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
    napi_set_named_property(env, o, c[i].k, zc__num(env, c[i].v));
  return o;
}

napi_status zc__init_io(napi_env env, napi_value exports) {
  static const struct { const char* name; napi_callback fn; } fns[] = {
    {"sendfile", zc_sendfile},   {"sendfileAsync", zc_sendfile_async},
    {"pread", zc_pread},         {"write", zc_write},
    {"dup", zc_dup},             {"close", zc_close},
    {"getFl", zc_get_fl},        {"setFl", zc_set_fl},
    {"shutdown", zc_shutdown},   {"fstatKind", zc_fstat_kind},
    {"sockInfo", zc_sock_info},  {"constants", zc_constants},
    {"spliceFile", zc_splice_file}, {"lseek", zc_lseek},
    {"sendBuffer", zc_send_buffer},
  };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_status s = zc__export(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
