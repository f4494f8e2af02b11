/* Measurement loops for `zcopy bench` (issue 10), and nothing else.
 *
 * These are the C reference mechanisms the bench compares: a read/write
 * loop, mmap + write, sendfile, splice and copy_file_range, plus a sink that
 * reads a socket to EOF. Unlike the rest of the addon they BLOCK: each runs
 * in a dedicated bench child process (src/bench/child.ts) on a blocking fd
 * the bench opened itself, never on Node's event loop, and the library never
 * calls them. Each returns the bytes it moved and how many syscalls of each
 * kind it made (EINTR retries included), or a negative errno; the counts are
 * what `--trace off` reports as "counted by the program", so every syscall a
 * loop makes is counted where it is made.
 */
#include "zcopy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Linux moves at most this much per read/write/sendfile/splice call. */
#define ZC__MAX_CALL 0x7ffff000LL

/* Syscall counters of one loop, in the order the loop names them. */
typedef struct {
  const char* name[4];
  double n[4];
  double bytes;
} zc__counts;

/* {bytes, syscalls: {name: n}} for JS, or the negative errno. */
static napi_value zc__result(napi_env env, const zc__counts* c, int err) {
  if (err != 0) return zc__num(env, -err);
  napi_value o, calls;
  napi_create_object(env, &o);
  napi_create_object(env, &calls);
  for (int i = 0; i < 4 && c->name[i] != NULL; i++)
    napi_set_named_property(env, calls, c->name[i], zc__num(env, c->n[i]));
  napi_set_named_property(env, o, "bytes", zc__num(env, c->bytes));
  napi_set_named_property(env, o, "syscalls", calls);
  return o;
}

static long long zc__min(long long a, long long b) { return a < b ? a : b; }

/* Writes all of buf[0, len), counting write calls in *calls. */
static int zc__write_all(int fd, const char* buf, size_t len, double* calls) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    (*calls)++;
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    buf += w;
    len -= (size_t)w;
  }
  return 0;
}

/* benchReadWrite(inFd, outFd, chunk): the traditional loop, read() into a
 * chunk-sized user buffer and write() it out, until EOF of inFd. */
static napi_value zc_bench_read_write(napi_env env, napi_callback_info info) {
  ZC_ARGS(3);
  ZC_I32(0, in_fd);
  ZC_I32(1, out_fd);
  ZC_I64(2, chunk);
  zc__counts c = { { "read", "write", NULL, NULL }, { 0, 0, 0, 0 }, 0 };
  char* buf = malloc((size_t)chunk);
  if (buf == NULL) return zc__num(env, -ENOMEM);
  int err = 0;
  for (;;) {
    ssize_t r = read(in_fd, buf, (size_t)chunk);
    c.n[0]++;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err = errno;
      break;
    }
    if (r == 0) break;
    err = zc__write_all(out_fd, buf, (size_t)r, &c.n[1]);
    if (err != 0) break;
    c.bytes += (double)r;
  }
  free(buf);
  return zc__result(env, &c, err);
}

/* benchMmapWrite(inFd, outFd, length, chunk): map the file once and write()
 * it from the mapping, chunk bytes per call. */
static napi_value zc_bench_mmap_write(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, in_fd);
  ZC_I32(1, out_fd);
  ZC_I64(2, len);
  ZC_I64(3, chunk);
  zc__counts c = { { "mmap", "write", "munmap", NULL }, { 0, 0, 0, 0 }, 0 };
  if (len == 0) return zc__result(env, &c, 0);
  char* p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, in_fd, 0);
  c.n[0]++;
  if (p == MAP_FAILED) return zc__num(env, -errno);
  int err = 0;
  for (long long at = 0; at < len && err == 0; at += chunk) {
    size_t n = (size_t)zc__min(chunk, len - at);
    err = zc__write_all(out_fd, p + at, n, &c.n[1]);
    if (err == 0) c.bytes += (double)n;
  }
  munmap(p, (size_t)len);
  c.n[2]++;
  return zc__result(env, &c, err);
}

/* benchSendfile(inFd, outFd, length): sendfile(2) asked for everything left,
 * repeated until length bytes went (a blocking socket takes it in one). */
static napi_value zc_bench_sendfile(napi_env env, napi_callback_info info) {
  ZC_ARGS(3);
  ZC_I32(0, in_fd);
  ZC_I32(1, out_fd);
  ZC_I64(2, len);
  zc__counts c = { { "sendfile", NULL, NULL, NULL }, { 0, 0, 0, 0 }, 0 };
  off_t off = 0;
  int err = 0;
  while (off < len) {
    ssize_t n = sendfile(out_fd, in_fd, &off,
                         (size_t)zc__min(len - off, ZC__MAX_CALL));
    c.n[0]++;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
  }
  c.bytes = (double)off;
  return zc__result(env, &c, err);
}

/* benchSplice(inFd, outFd, length, pipeSize): file -> pipe -> outFd with a
 * pipe of pipeSize bytes (F_SETPIPE_SZ); close() of both ends counted. */
static napi_value zc_bench_splice(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, in_fd);
  ZC_I32(1, out_fd);
  ZC_I64(2, len);
  ZC_I32(3, pipe_size);
  zc__counts c = { { "pipe2", "fcntl", "splice", "close" }, { 0, 0, 0, 0 },
                   0 };
  int p[2];
  c.n[0]++;
  if (pipe2(p, O_CLOEXEC) != 0) return zc__num(env, -errno);
  c.n[1]++;
  int cap = fcntl(p[1], F_SETPIPE_SZ, pipe_size);
  if (cap <= 0) cap = 65536;
  loff_t off = 0;
  int err = 0;
  while (off < len && err == 0) {
    ssize_t in = splice(in_fd, &off, p[1], NULL,
                        (size_t)zc__min(len - off, cap), SPLICE_F_MORE);
    c.n[2]++;
    if (in < 0 && errno == EINTR) continue;
    if (in < 0) {
      err = errno;
      break;
    }
    if (in == 0) break;
    while (in > 0) {
      ssize_t out = splice(p[0], NULL, out_fd, NULL, (size_t)in,
                           SPLICE_F_MORE);
      c.n[2]++;
      if (out < 0 && errno == EINTR) continue;
      if (out < 0) {
        err = errno;
        break;
      }
      in -= out;
      c.bytes += (double)out;
    }
  }
  close(p[0]);
  close(p[1]);
  c.n[3] += 2;
  return zc__result(env, &c, err);
}

/* benchCopyFileRange(inFd, outFd, length, chunk): copy_file_range(2) of at
 * most chunk bytes per call (file -> file only). */
static napi_value zc_bench_copy_file_range(napi_env env,
                                           napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, in_fd);
  ZC_I32(1, out_fd);
  ZC_I64(2, len);
  ZC_I64(3, chunk);
  zc__counts c = { { "copy_file_range", NULL, NULL, NULL }, { 0, 0, 0, 0 },
                   0 };
  loff_t in_off = 0, out_off = 0;
  int err = 0;
  while (in_off < len) {
    ssize_t n = copy_file_range(in_fd, &in_off, out_fd, &out_off,
                                (size_t)zc__min(len - in_off, chunk), 0);
    c.n[0]++;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
  }
  c.bytes = (double)out_off;
  return zc__result(env, &c, err);
}

/* benchSink(fd, bufSize): read() a socket into one buffer until EOF. */
static napi_value zc_bench_sink(napi_env env, napi_callback_info info) {
  ZC_ARGS(2);
  ZC_I32(0, fd);
  ZC_I64(1, size);
  zc__counts c = { { "read", NULL, NULL, NULL }, { 0, 0, 0, 0 }, 0 };
  char* buf = malloc((size_t)size);
  if (buf == NULL) return zc__num(env, -ENOMEM);
  int err = 0;
  for (;;) {
    ssize_t r = read(fd, buf, (size_t)size);
    c.n[0]++;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err = errno;
      break;
    }
    if (r == 0) break;
    c.bytes += (double)r;
  }
  free(buf);
  return zc__result(env, &c, err);
}

/* benchFinish(sockFd): half-close, then read until the receiver closes, so
 * a sender's time covers delivery and not just hand-off to the kernel. */
static napi_value zc_bench_finish(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  zc__counts c = { { "shutdown", "read", NULL, NULL }, { 0, 0, 0, 0 }, 0 };
  c.n[0]++;
  if (shutdown(fd, SHUT_WR) != 0) return zc__num(env, -errno);
  char b[64];
  for (;;) {
    ssize_t r = read(fd, b, sizeof(b));
    c.n[1]++;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
  }
  return zc__result(env, &c, 0);
}

/* Fills a sockaddr_un from a Buffer holding the path (no NUL needed). */
static int zc__unix_addr(napi_env env, napi_value v, struct sockaddr_un* un) {
  void* data;
  size_t len;
  if (zc__arg_buf(env, v, &data, &len) != 0) return -1;
  memset(un, 0, sizeof(*un));
  un->sun_family = AF_UNIX;
  if (len >= sizeof(un->sun_path)) return -2;
  memcpy(un->sun_path, data, len);
  return 0;
}

/* benchSocket(kind, path, port, listen): a BLOCKING stream socket, kind 0 =
 * Unix (path), 1 = TCP on 127.0.0.1 (port; 0 picks one when listening).
 * listen = 1 binds and listens, 0 connects. -> fd | -errno. */
static napi_value zc_bench_socket(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, kind);
  ZC_I32(2, port);
  ZC_I32(3, do_listen);
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof(ss));
  if (kind == 0) {
    int r = zc__unix_addr(env, argv[1], (struct sockaddr_un*)&ss);
    if (r == -1) return NULL;
    if (r == -2) return zc__num(env, -ENAMETOOLONG);
    len = sizeof(struct sockaddr_un);
  } else {
    struct sockaddr_in* in = (struct sockaddr_in*)&ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((unsigned short)port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*in);
  }
  int fd = socket(kind == 0 ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC,
                  0);
  if (fd < 0) return zc__num(env, -errno);
  int rc;
  if (do_listen) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    rc = bind(fd, (struct sockaddr*)&ss, len);
    if (rc == 0) rc = listen(fd, 4);
  } else {
    do
      rc = connect(fd, (struct sockaddr*)&ss, len);
    while (rc != 0 && errno == EINTR);
  }
  if (rc != 0) {
    int e = errno;
    close(fd);
    return zc__num(env, -e);
  }
  return zc__num(env, fd);
}

/* benchLocalPort(fd) -> the TCP port a socket is bound to | -errno. */
static napi_value zc_bench_local_port(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  struct sockaddr_in in;
  socklen_t len = sizeof(in);
  if (getsockname(fd, (struct sockaddr*)&in, &len) != 0)
    return zc__num(env, -errno);
  return zc__num(env, ntohs(in.sin_port));
}

/* benchAccept(listenFd) -> a blocking connected fd | -errno. */
static napi_value zc_bench_accept(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I32(0, fd);
  int c;
  do
    c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  return zc__num(env, c < 0 ? -errno : c);
}

/* benchPin(cpuMask): sched_setaffinity on every thread of the process
 * (/proc/self/task), since Node's worker threads exist before the bench can
 * pin; threads created later inherit. cpuMask is a bit mask of CPUs 0..52.
 * -> threads pinned | -errno. */
static napi_value zc_bench_pin(napi_env env, napi_callback_info info) {
  ZC_ARGS(1);
  ZC_I64(0, mask);
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int i = 0; i < 53; i++)
    if (mask & (1LL << i)) CPU_SET(i, &set);
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return zc__num(env, -errno);
  int pinned = 0, err = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (sched_setaffinity(atoi(e->d_name), sizeof(set), &set) == 0)
      pinned++;
    else if (errno != ESRCH)
      err = errno;
  }
  closedir(d);
  return zc__num(env, err != 0 ? -err : pinned);
}

/* benchDieWithParent(): SIGKILL this process when its parent dies, so a
 * sink blocked in accept() or read() cannot outlive a killed bench.
 * -> the parent's pid as seen after arming (1 or a subreaper: it is gone). */
static napi_value zc_bench_die_with_parent(napi_env env,
                                           napi_callback_info info) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return zc__num(env, -errno);
  return zc__num(env, getppid());
}

napi_status zc__init_bench(napi_env env, napi_value exports) {
  static const struct {
    const char* name;
    napi_callback fn;
  } fns[] = {
    { "benchReadWrite", zc_bench_read_write },
    { "benchMmapWrite", zc_bench_mmap_write },
    { "benchSendfile", zc_bench_sendfile },
    { "benchSplice", zc_bench_splice },
    { "benchCopyFileRange", zc_bench_copy_file_range },
    { "benchSink", zc_bench_sink },
    { "benchFinish", zc_bench_finish },
    { "benchSocket", zc_bench_socket },
    { "benchLocalPort", zc_bench_local_port },
    { "benchAccept", zc_bench_accept },
    { "benchPin", zc_bench_pin },
    { "benchDieWithParent", zc_bench_die_with_parent },
  };
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_status s = zc__export(env, exports, fns[i].name, fns[i].fn);
    if (s != napi_ok) return s;
  }
  return napi_ok;
}
