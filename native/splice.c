/* splice(2) between sockets through a pipe, and what a socket-to-socket
 * forwarder needs besides: a private epoll set per direction (so a writable
 * wait is not woken forever by a peer's half-close, which a uv_poll with
 * UV_DISCONNECT would be), recv() for the native copy loop, and SO_ERROR. */
#include "zcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* splice(fdIn, fdOut, len) -> n | -errno. Non-blocking; SPLICE_F_MOVE is a
 * no-op since 2.6.21, SPLICE_F_MORE hints that more follows. */
static napi_value zc_splice(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, fd_in);
  ZC_I32(1, fd_out);
  ZC_I64(2, len);
  ZC_I32(3, more);
  unsigned flags = SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0);
  if (len > 0x7ffff000LL) len = 0x7ffff000LL;
  ssize_t n;
  do
    n = splice(fd_in, NULL, fd_out, NULL, (size_t)len, flags);
  while (n < 0 && errno == EINTR);
  return zc__num(env, n < 0 ? -errno : (double)n);
}

/* pipe(size) -> [readFd, writeFd, capacity] | -errno. Both ends are
 * non-blocking and close-on-exec; capacity is what F_SETPIPE_SZ granted
 * (the kernel may refuse growth past pipe-max-size or the user's quota). */
static napi_value zc_pipe(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, size);
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return zc__num(env, -errno);
  /* Closed at worker teardown if JS never closes them (addon.c). */
  zc__env_own_fd(env, fds[0]);
  zc__env_own_fd(env, fds[1]);
  int cap = size > 0 ? fcntl(fds[1], F_SETPIPE_SZ, size) : -1;
  if (cap < 0) cap = fcntl(fds[1], F_GETPIPE_SZ);
  napi_value arr;
  napi_create_array_with_length(env, 3, &arr);
  napi_set_element(env, arr, 0, zc__num(env, fds[0]));
  napi_set_element(env, arr, 1, zc__num(env, fds[1]));
  napi_set_element(env, arr, 2, zc__num(env, cap));
  return arr;
}

/* fionread(fd) -> bytes readable now | -errno (pipes and sockets). */
static napi_value zc_fionread(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int n = 0;
  if (ioctl(fd, FIONREAD, &n) < 0) return zc__num(env, -errno);
  return zc__num(env, n);
}

/* recv(fd, buf, bufOffset, length) -> n | -errno. MSG_DONTWAIT so a socket
 * Node left blocking still answers EAGAIN; read() for non-sockets (a pipe
 * being drained on a fallback). */
static napi_value zc_recv(napi_env env, napi_callback_info info) {
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
    r = recv(fd, (char*)data + boff, (size_t)n, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == ENOTSOCK) {
    do
      r = read(fd, (char*)data + boff, (size_t)n);
    while (r < 0 && errno == EINTR);
  }
  return zc__num(env, r < 0 ? -errno : (double)r);
}

/* sockError(fd) -> -SO_ERROR (0 when none) | -errno: why a socket that
 * epoll reported EPOLLERR failed, without reading or writing it. */
static napi_value zc_sock_error(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return zc__num(env, -errno);
  return zc__num(env, -err);
}

/* oobInline(fd) -> 0 | -errno: SO_OOBINLINE, so a TCP urgent byte stays in
 * the stream, in place, instead of waiting aside for recv(MSG_OOB), which a
 * forwarder never calls. */
static napi_value zc_oob_inline(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0)
    return zc__num(env, -errno);
  return zc__num(env, 0);
}

/* atMark(fd) -> 1 | 0 | -errno: SIOCATMARK, whether the next byte to read
 * is a TCP urgent byte. splice(2) from a TCP socket stops there (EAGAIN
 * while the socket stays readable); recv() reads past it. */
static napi_value zc_at_mark(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int at = 0;
  if (ioctl(fd, SIOCATMARK, &at) < 0) return zc__num(env, -errno);
  return zc__num(env, at ? 1 : 0);
}

/* epollNew() -> epfd | -errno (close-on-exec). */
static napi_value zc_epoll_new(napi_env env, napi_callback_info info) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep >= 0) zc__env_own_fd(env, ep);
  return zc__num(env, ep < 0 ? -errno : ep);
}

/* epollCtl(epfd, op, fd, events, tag) -> 0 | -errno. The tag comes back
 * from epollWait in place of the fd. Level-triggered: the TS layer sets the
 * interest it needs before each wait. */
static napi_value zc_epoll_ctl(napi_env env, napi_callback_info info) {
  ZC_ARGS(5);
  ZC_I32(0, ep);
  ZC_I32(1, op);
  ZC_I32(2, fd);
  ZC_I32(3, events);
  ZC_I32(4, tag);
  struct epoll_event ev;
  ev.events = (uint32_t)events;
  ev.data.u64 = (uint64_t)(uint32_t)tag;
  int r = epoll_ctl(ep, op, fd, &ev);
  return zc__num(env, r < 0 ? -errno : 0);
}

/* epollWait(epfd, out: Int32Array) -> n | -errno. Never blocks; fills
 * out[2i] = tag, out[2i + 1] = events for the n ready entries. */
static napi_value zc_epoll_wait(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, ep);
  bool ok = false;
  napi_typedarray_type t;
  size_t count = 0;
  void* data = NULL;
  if (napi_is_typedarray(env, argv[1], &ok) != napi_ok || !ok ||
      napi_get_typedarray_info(env, argv[1], &t, &count, &data, NULL, NULL) !=
          napi_ok ||
      t != napi_int32_array) {
    napi_throw_type_error(env, NULL, "zcopy native: expected an Int32Array");
    return NULL;
  }
  struct epoll_event evs[8];
  int max = (int)(count / 2);
  if (max > 8) max = 8;
  if (max < 1) return zc__num(env, -EINVAL);
  int n;
  do
    n = epoll_wait(ep, evs, max, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return zc__num(env, -errno);
  int32_t* out = data;
  for (int i = 0; i < n; i++) {
    out[2 * i] = (int32_t)evs[i].data.u64;
    out[2 * i + 1] = (int32_t)evs[i].events;
  }
  return zc__num(env, n);
}

/* spliceConstants() -> the epoll numbers the TS layer uses. */
static napi_value zc_splice_constants(napi_env env, napi_callback_info info) {
  napi_value o;
  napi_create_object(env, &o);
  struct { const char* k; double v; } c[] = {
    {"EPOLLIN", EPOLLIN}, {"EPOLLOUT", EPOLLOUT}, {"EPOLLERR", EPOLLERR},
    {"EPOLLHUP", EPOLLHUP}, {"EPOLL_CTL_ADD", EPOLL_CTL_ADD},
    {"EPOLL_CTL_MOD", EPOLL_CTL_MOD}, {"EPOLL_CTL_DEL", EPOLL_CTL_DEL},
  };
  for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
    napi_set_named_property(env, o, c[i].k, zc__num(env, c[i].v));
  return o;
}

napi_status zc__init_splice(napi_env env, napi_value exports) {
  static const struct { const char* name; napi_callback fn; } fns[] = {
    {"splice", zc_splice},         {"pipe", zc_pipe},
    {"fionread", zc_fionread},     {"recv", zc_recv},
    {"sockError", zc_sock_error},  {"epollNew", zc_epoll_new},
    {"epollCtl", zc_epoll_ctl},    {"epollWait", zc_epoll_wait},
    {"spliceConstants", zc_splice_constants},
    {"oobInline", zc_oob_inline},  {"atMark", zc_at_mark},
  };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_status s = zc__export(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
