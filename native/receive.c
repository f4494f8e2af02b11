/* Network to disk: socket -> pipe -> file with splice(2), on the threadpool.
 *
 * The socket half is non-blocking (the socket is O_NONBLOCK, and the call
 * says SPLICE_F_NONBLOCK), so an idle peer ends the job with EAGAIN and the
 * TypeScript layer waits for readability with a uv_poll. The file half
 * writes into the page cache and may block on a slow or full disk, or on
 * dirty-page throttling: that is why the whole loop runs on a libuv worker
 * thread and never on the event loop. Every fd is a private one (a dup of
 * the socket, a pooled pipe, the caller's file), so nothing here races with
 * Node closing its own fds. A TCP urgent byte, where splice stops, is read
 * past with recv() (zc__past_mark). */
#include "zcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Outcomes reported in `status` besides a negative errno. */
#define ZC_RECV_BUDGET 0 /* max bytes moved: the caller decides what next */
#define ZC_RECV_EOF 1    /* the peer closed its side (splice returned 0) */

typedef struct {
  napi_async_work work;
  napi_ref cb;
  int sock_fd;
  int pipe_r;
  int pipe_w;
  int file_fd;
  int64_t offset;
  int64_t max;
  int64_t cap;
  /* Results: bytes that reached the file, the outcome, the side that
   * failed (0 socket, 1 file) and bytes left in the pipe by a failure. */
  int64_t moved;
  int64_t status;
  int64_t side;
  int64_t stuck;
} zc__recv_job;

/* TCP's splice stops in front of an urgent (MSG_OOB) byte: tcp_read_sock
 * reads nothing at the mark, so splice answers EAGAIN while the socket
 * stays readable, and would forever (issue 8, item 5). Called on that
 * EAGAIN with the pipe empty: if SIOCATMARK says we sit at the mark,
 * recv() reads past it (the urgent byte included when the caller set
 * SO_OOBINLINE) into the empty pipe, which clears the mark, and splicing
 * goes on. Returns the bytes put in the pipe, 0 at EOF, or -1 with errno
 * (EAGAIN when not at the mark: the socket really is empty). A few bytes
 * per urgent mark pass through user space; the rest is still spliced. */
static ssize_t zc__past_mark(zc__recv_job* j, int64_t want) {
  int at = 0;
  if (ioctl(j->sock_fd, SIOCATMARK, &at) < 0 || !at) {
    errno = EAGAIN;
    return -1;
  }
  /* PIPE_BUF at most: a write of that size to an empty pipe is whole. */
  char buf[4096];
  if (want > (int64_t)sizeof(buf)) want = sizeof(buf);
  if (want > j->cap) want = j->cap;
  ssize_t r;
  do
    r = recv(j->sock_fd, buf, (size_t)want, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return r;
  ssize_t w;
  do
    w = write(j->pipe_w, buf, (size_t)r);
  while (w < 0 && errno == EINTR);
  if (w != r) {
    /* Cannot happen with an empty pipe; the bytes read would be lost, so
     * it is reported as a failure of the socket side (the socket is
     * destroyed, never silently continued). */
    if (w >= 0) errno = EIO;
    return -1;
  }
  return r;
}

static void zc__recv_execute(napi_env env, void* data) {
  zc__recv_job* j = data;
  loff_t off = (loff_t)j->offset;
  j->status = ZC_RECV_BUDGET;
  while (j->moved < j->max) {
    int64_t want = j->max - j->moved;
    if (want > j->cap) want = j->cap;
    ssize_t n;
    /* Never more than `want`: bytes past a length limit stay in the
     * socket for whoever reads it next. */
    do
      n = splice(j->sock_fd, NULL, j->pipe_w, NULL, (size_t)want,
                 SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    while (n < 0 && errno == EINTR);
    /* The pipe is empty here (each round drains what it spliced). */
    if (n < 0 && errno == EAGAIN) n = zc__past_mark(j, want);
    if (n < 0) {
      j->status = -errno;
      j->side = 0;
      return;
    }
    if (n == 0) {
      j->status = ZC_RECV_EOF;
      return;
    }
    /* Drain exactly what went in. The pipe is non-blocking but holds n
     * bytes, so only the file side can wait (on this worker thread). */
    ssize_t left = n;
    while (left > 0) {
      ssize_t w;
      do
        w = splice(j->pipe_r, NULL, j->file_fd, &off, (size_t)left,
                   SPLICE_F_MOVE);
      while (w < 0 && errno == EINTR);
      if (w <= 0) {
        j->status = w < 0 ? -errno : -EIO;
        j->side = 1;
        j->stuck = left;
        return;
      }
      left -= w;
      j->moved += w;
    }
  }
}

static void zc__recv_complete(napi_env env, napi_status status, void* data) {
  zc__recv_job* j = data;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, argv[4];
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_global(env, &global);
  argv[0] = zc__num(env, (double)j->moved);
  argv[1] = zc__num(env, status == napi_cancelled ? -ECANCELED
                                                  : (double)j->status);
  argv[2] = zc__num(env, (double)j->side);
  argv[3] = zc__num(env, (double)j->stuck);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free(j);
  if (cb != NULL) {
    napi_status s = napi_call_function(env, global, cb, 4, argv, NULL);
    if (s == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* spliceToFileAsync(sockFd, pipeR, pipeW, pipeCap, fileFd, offset, max,
 *   cb(moved, status, side, stuck)): moves up to `max` bytes socket -> pipe
 * -> file at `offset` on the threadpool. status: 0 max reached, 1 EOF, or
 * -errno (-EAGAIN: the socket has nothing now); side 0 socket, 1 file;
 * stuck: bytes a file-side failure left in the pipe. */
static napi_value zc_splice_to_file_async(napi_env env,
                                          napi_callback_info info) {
  ZC_ARGS(8);
  ZC_I32(0, sock_fd);
  ZC_I32(1, pipe_r);
  ZC_I32(2, pipe_w);
  ZC_I64(3, cap);
  ZC_I32(4, file_fd);
  ZC_I64(5, offset);
  ZC_I64(6, max);
  if (cap <= 0 || offset < 0 || max < 0) return zc__num(env, -EINVAL);
  zc__recv_job* j = calloc(1, sizeof(*j));
  if (j == NULL) return zc__num(env, -ENOMEM);
  j->sock_fd = sock_fd;
  j->pipe_r = pipe_r;
  j->pipe_w = pipe_w;
  j->cap = cap;
  j->file_fd = file_fd;
  j->offset = offset;
  j->max = max;
  napi_value name;
  napi_create_string_utf8(env, "zcopy:receive", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[7], 1, &j->cb) != napi_ok ||
      napi_create_async_work(env, NULL, name, zc__recv_execute,
                             zc__recv_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free(j);
    napi_throw_error(env, NULL, "zcopy native: cannot queue work");
    return NULL;
  }
  return zc__undefined(env);
}

/* rcvLowat(fd, bytes) -> the socket's SO_RCVLOWAT before the call |
 * -errno. bytes < 0 only reads it. With SO_RCVLOWAT = L, poll(2) reports a
 * TCP socket readable only once L bytes are queued (or FIN, an error, or
 * receive memory pressure), so a wait ends with more to move. A socket that
 * is not TCP answers -ENOPROTOOPT without change: a Unix socket's poll
 * ignores SO_RCVLOWAT. */
static napi_value zc_rcv_lowat(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I32(1, bytes);
  int proto = 0;
  socklen_t len = sizeof(proto);
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0)
    return zc__num(env, -errno);
  if (proto != IPPROTO_TCP) return zc__num(env, -ENOPROTOOPT);
  int prev = 0;
  len = sizeof(prev);
  if (getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &prev, &len) < 0)
    return zc__num(env, -errno);
  if (bytes >= 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) < 0)
    return zc__num(env, -errno);
  return zc__num(env, prev);
}

napi_status zc__init_receive(napi_env env, napi_value exports) {
  napi_status s = zc__export(env, exports, "spliceToFileAsync",
                             zc_splice_to_file_async);
  if (s != napi_ok) return s;
  return zc__export(env, exports, "rcvLowat", zc_rcv_lowat);
}
