/* Readiness for fds Node does not know about.
 *
 * A Poller is a uv_poll_t on a dup(2) of a socket fd, never on the fd libuv
 * already watches (two polls on one fd in one loop hang or assert: libuv
 * #2058, #2387). It is level-triggered and one-shot by convention: the TS
 * layer starts it after EAGAIN and stops it at the first callback, so a
 * stalled peer costs no CPU. The poller never owns the fd; TS closes the dup
 * after pollerClose.
 *
 * A poller can also pump a file into its socket (pollerPump): each
 * writability wake-up then runs sendfile here, in C, until the socket is
 * full again, and JS hears of it only when the range is sent, a sendfile
 * fails, or the TS layer asked to look again (maxMs). A transfer to a reader
 * that drains the socket buffer thousands of times per GiB so costs one
 * sendfile per wake-up and no JS round trip. The TS layer pumps only ranges
 * it found in the page cache: sendfile here never waits for the disk. */
#include "zcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <uv.h>

typedef struct zc__poller {
  uv_poll_t handle;
  napi_env env;
  zc__env* e;       /* the environment's state: live list, teardown */
  struct zc__poller* prev; /* live list: not yet closed */
  struct zc__poller* next;
  napi_ref cb;
  napi_async_context ctx;
  int events;    /* UV_* events of the running poll; 0 when stopped */
  int closing;   /* uv_close called; the struct is freed in its callback */
  int finalized; /* the JS external is gone */
  int fd;        /* the polled fd (the socket a pump writes to) */
  /* The pump (pollerPump): active while pumping is set. */
  int pumping;
  int in_fd;
  int64_t off, left;   /* next file offset, bytes of the range left */
  int64_t moved;       /* bytes sent since pollerPump */
  int64_t budget;      /* no further sendfile in a wake-up past this */
  uint64_t deadline;   /* uv_now() after which JS is called back */
} zc__poller;

static void zc__poller_unlink(zc__poller* p) {
  if (p->prev != NULL) p->prev->next = p->next;
  else if (p->e->pollers == p) p->e->pollers = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  p->prev = p->next = NULL;
}

static void zc__poller_closed(uv_handle_t* h) {
  zc__poller* p = (zc__poller*)h->data;
  zc__env* e = p->e;
  zc__poller_unlink(p);
  /* The JS side may still hold the external; free only when both the handle
   * and the external are gone. */
  p->closing = 2;
  if (p->finalized) free(p);
  /* Last: at teardown this may let Node go on and unload the addon. */
  zc__env_handle_closed(e);
}

static void zc__poller_release_js(zc__poller* p) {
  if (p->cb != NULL) {
    napi_delete_reference(p->env, p->cb);
    p->cb = NULL;
  }
  if (p->ctx != NULL) {
    napi_async_destroy(p->env, p->ctx);
    p->ctx = NULL;
  }
}

static void zc__poller_close(zc__poller* p) {
  if (p->closing) return;
  p->closing = 1;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t*)&p->handle, zc__poller_closed);
}

static void zc__poller_finalize(napi_env env, void* data, void* hint) {
  zc__poller* p = data;
  p->finalized = 1;
  zc__poller_release_js(p);
  if (!p->closing) {
    zc__poller_close(p);
  } else if (p->closing == 2) {
    free(p);
  }
}

/* One writability wake-up of a pump. Returns 1 when JS must be called back
 * (*result: 0 the range is sent or the file ended, -EAGAIN time to look
 * again, else the -errno of sendfile), 0 to keep pumping on the next
 * wake-up without calling JS. */
static int zc__pump(zc__poller* p, int status, int64_t* result) {
  int64_t burst = 0;
  *result = 0;
  while (p->left > 0) {
    int64_t want = p->left;
    int64_t n = zc__sendfile(p->fd, p->in_fd, p->off, want);
    if (n == 0) return 1; /* the file ended early: JS says it was truncated */
    if (n < 0 && n != -EAGAIN) {
      *result = n;
      return 1;
    }
    if (n > 0) {
      p->off += n;
      p->left -= n;
      p->moved += n;
      burst += n;
    }
    /* Short or EAGAIN: the socket is full. Past the budget: other handles
     * run first; the poll is level-triggered, so the next turn comes back
     * here. One call asks for all that is left, so it is bounded by the
     * socket's free send buffer, not by the budget (up to 3/4 of an 8 MiB
     * buffer on a Unix socket): capping it at the budget would leave a Unix
     * socket, which polls writable only at 1/4 full, refilled in budget
     * steps per wake-up. */
    if (n < 0 || n < want || burst >= p->budget) break;
  }
  if (p->left == 0) return 1;
  /* A wake-up for an error or hang-up the send did not report: let JS look
   * (as a plain wait would), never spin here on a level-triggered error. */
  if (status < 0 || uv_now(p->handle.loop) >= p->deadline) {
    *result = -EAGAIN;
    return 1;
  }
  return 0;
}

static void zc__poller_cb(uv_poll_t* h, int status, int events) {
  zc__poller* p = (zc__poller*)h->data;
  if (p->closing || p->cb == NULL || p->e->stopping) return;
  int64_t pumped = 0, pump_result = 0;
  if (p->pumping) {
    if (!zc__pump(p, status, &pump_result)) return;
    p->pumping = 0;
    pumped = p->moved;
  }
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[4], result;
  napi_get_reference_value(env, p->cb, &cb);
  /* make_callback needs an object receiver; undefined would throw. */
  napi_get_global(env, &recv);
  argv[0] = zc__num(env, status);
  argv[1] = zc__num(env, events);
  argv[2] = zc__num(env, (double)pumped);
  argv[3] = zc__num(env, (double)pump_result);
  /* make_callback runs the microtask queue afterwards, as any I/O callback
   * of Node's would, so promise continuations run before the next poll. */
  napi_status s = napi_make_callback(env, p->ctx, recv, cb, 4, argv, &result);
  if (s == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static zc__poller* zc__get_poller(napi_env env, napi_value v) {
  void* data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "zcopy native: expected a poller");
    return NULL;
  }
  return data;
}

/* pollerNew(fd, cb(status, events)) -> poller | -errno */
static napi_value zc_poller_new(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  zc__env* e = zc__env_get(env);
  if (e == NULL || e->stopping) return zc__num(env, -ECANCELED);
  zc__poller* p = calloc(1, sizeof(*p));
  if (p == NULL) return zc__num(env, -ENOMEM);
  p->env = env;
  p->e = e;
  p->fd = fd;
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    free(p);
    return zc__num(env, r);
  }
  p->handle.data = p;
  /* Counted and listed until its close callback runs, so teardown can close
   * it and wait for that callback. */
  e->open_handles++;
  p->next = e->pollers;
  if (p->next != NULL) p->next->prev = p;
  e->pollers = p;
  napi_value name, ext;
  napi_create_string_utf8(env, "zcopy:poll", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[1], 1, &p->cb);
  napi_async_init(env, NULL, name, &p->ctx);
  if (napi_create_external(env, p, zc__poller_finalize, NULL, &ext) !=
      napi_ok) {
    zc__poller_release_js(p);
    p->finalized = 1;
    zc__poller_close(p);
    return NULL;
  }
  return ext;
}

/* Polls for ev (UV_* flags). Already polling for the same events: nothing
 * to do. Restarting would cost epoll_ctl calls per wait (libuv re-adds the
 * fd), which a transfer to a slow reader makes thousands of times per GiB. */
static int zc__poller_arm(zc__poller* p, int ev) {
  if (p->events == ev && uv_is_active((uv_handle_t*)&p->handle)) return 0;
  int r = uv_poll_start(&p->handle, ev, zc__poller_cb);
  p->events = r == 0 ? ev : 0;
  return r;
}

/* pollerStart(p, events) -> 0 | -errno. events: 1 readable, 2 writable. */
static napi_value zc_poller_start(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  zc__poller* p = zc__get_poller(env, argv[0]);
  if (p == NULL) return NULL;
  ZC_I32(1, events);
  if (p->closing) return zc__num(env, -EBADF);
  int ev = 0;
  if (events & 1) ev |= UV_READABLE;
  if (events & 2) ev |= UV_WRITABLE;
  /* No UV_DISCONNECT (EPOLLRDHUP) for a writability wait: it is
   * level-triggered, so after a peer's FIN it would wake the wait at once,
   * forever, while the send buffer stays full (a half-closed peer may still
   * read). A reset or a full close still wakes it: epoll always reports
   * EPOLLERR and EPOLLHUP. A readable wait is woken by the FIN anyway. */
  if (events & 1) ev |= UV_DISCONNECT;
  p->pumping = 0;
  return zc__num(env, zc__poller_arm(p, ev));
}

/* pollerPump(p, inFd, offset, count, budget, maxMs) -> 0 | -errno. Polls
 * for writability and sends [offset, offset + count) of inFd with sendfile
 * at each wake-up (no second sendfile past budget bytes), calling back
 * cb(status, events, moved, result) once the range is sent, sendfile fails
 * (result -errno; 0 with moved < count: the file ended), or maxMs passed
 * (result -EAGAIN). The range must be in the page cache. */
static napi_value zc_poller_pump(napi_env env, napi_callback_info info) {
  ZC_ARGS(6);
  zc__poller* p = zc__get_poller(env, argv[0]);
  if (p == NULL) return NULL;
  ZC_I32(1, in_fd);
  ZC_I64(2, offset);
  ZC_I64(3, count);
  ZC_I64(4, budget);
  ZC_I64(5, max_ms);
  if (p->closing) return zc__num(env, -EBADF);
  if (offset < 0 || count <= 0 || budget <= 0 || max_ms < 0)
    return zc__num(env, -EINVAL);
  p->in_fd = in_fd;
  p->off = offset;
  p->left = count;
  p->moved = 0;
  p->budget = budget;
  p->deadline = uv_now(p->handle.loop) + (uint64_t)max_ms;
  int r = zc__poller_arm(p, UV_WRITABLE);
  p->pumping = r == 0;
  return zc__num(env, r);
}

/* pollerStop(p) -> bytes an unfinished pump sent (0 if none). */
static napi_value zc_poller_stop(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  zc__poller* p = zc__get_poller(env, argv[0]);
  if (p == NULL) return NULL;
  if (!p->closing) uv_poll_stop(&p->handle);
  p->events = 0;
  int64_t moved = p->pumping ? p->moved : 0;
  p->pumping = 0;
  return zc__num(env, (double)moved);
}

/* pollerClose(p) -> bytes an unfinished pump sent (0 if none). Stops the
 * poll synchronously (the fd is out of the loop's epoll set when this
 * returns), so the caller may close the fd. */
static napi_value zc_poller_close(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  zc__poller* p = zc__get_poller(env, argv[0]);
  if (p == NULL) return NULL;
  int64_t moved = p->pumping ? p->moved : 0;
  p->pumping = 0;
  zc__poller_release_js(p);
  zc__poller_close(p);
  return zc__num(env, (double)moved);
}

void zc__poll_teardown(zc__env* e) {
  /* zc__poller_close only starts closing; the list shrinks in callbacks. */
  for (zc__poller* p = e->pollers; p != NULL; p = p->next)
    zc__poller_close(p);
}

napi_status zc__init_poll(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = zc__export(env, exports, "pollerNew", zc_poller_new)) != napi_ok ||
      (s = zc__export(env, exports, "pollerStart", zc_poller_start)) !=
          napi_ok ||
      (s = zc__export(env, exports, "pollerStop", zc_poller_stop)) !=
          napi_ok ||
      (s = zc__export(env, exports, "pollerPump", zc_poller_pump)) !=
          napi_ok ||
      (s = zc__export(env, exports, "pollerClose", zc_poller_close)) !=
          napi_ok)
    return s;
  return napi_ok;
}
