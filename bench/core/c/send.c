/*
 * Reference sender: moves a file to a socket the way a C program at the
 * physical limit would, and reports wall time and its own CPU.
 *
 *   send [--nonblock] [--chunk N] [--sndbuf N] MODE ADDR FILE [LENGTH]
 *
 * MODE is sendfile, copy (1 MiB pread/write loop) or splice
 * (file -> pipe -> socket). ADDR is tcp:PORT or unix:PATH. By default the
 * socket blocks and sendfile is asked for the whole file in one call;
 * --nonblock waits in poll(2) on EAGAIN instead, as an event loop would,
 * and --chunk N caps each sendfile call and sizes the copy buffer and the
 * splice pipe (default 1 MiB); --sndbuf N sets SO_SNDBUF. After the last
 * byte the sender half-closes and waits for the receiver to close, so the
 * wall time covers delivery, not just hand-off to the kernel. Output is one
 * JSON line on stdout, with the machine's busy CPU-seconds over the run
 * (see zcb__machine_busy) and how many times it waited in poll(2).
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define CHUNK (1 << 20)
/* Linux moves at most this much per sendfile/splice call. */
#define MAX_CALL 0x7ffff000L

/* --chunk: bytes per sendfile call (default: as many as the kernel takes),
 * the copy loop's buffer size and the splice pipe's size (default 1 MiB). */
static long long zcb__chunk = 0;
/* --nonblock: O_NONBLOCK socket, poll(POLLOUT) on EAGAIN, as an event loop
 * drives it. */
static int zcb__nonblock = 0;

/* Times the sender waited for writability (EAGAIN), like stats().waits. */
static long zcb__waits = 0;
/* --sndbuf N: SO_SNDBUF for the socket (0: the system default). */
static int zcb__sndbuf = 0;

static void zcb__wait_writable(int sock) {
  struct pollfd p = { .fd = sock, .events = POLLOUT };
  zcb__waits++;
  while (poll(&p, 1, -1) < 0 && errno == EINTR) {}
}

static long long zcb__send_sendfile(int sock, int file, long long len) {
  off_t off = 0;
  long long max = MAX_CALL;
  if (zcb__chunk > 0 && zcb__chunk < MAX_CALL) max = zcb__chunk;
  while (off < len) {
    long long want = len - off;
    ssize_t n = sendfile(sock, file, &off, want > max ? max : want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      zcb__wait_writable(sock);
      continue;
    }
    if (n < 0) zcb__die("sendfile");
    /* 0 with bytes owed means the file shrank: report, don't spin. */
    if (n == 0) break;
  }
  return off;
}

static long long zcb__send_copy(int sock, int file, long long len) {
  /* --chunk sets the buffer size; the default is 1 MiB. */
  size_t size = zcb__chunk > 0 ? (size_t) zcb__chunk : CHUNK;
  char *buf = malloc(size);
  if (buf == NULL) zcb__die("malloc");
  long long done = 0;
  while (done < len) {
    size_t want = len - done > (long long) size ? size : (size_t) (len - done);
    ssize_t n = pread(file, buf, want, done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) zcb__die("pread");
    if (n == 0) break;
    for (ssize_t w = 0; w < n;) {
      ssize_t m = write(sock, buf + w, n - w);
      if (m < 0 && errno == EINTR) continue;
      if (m < 0 && errno == EAGAIN) {
        zcb__wait_writable(sock);
        continue;
      }
      if (m < 0) zcb__die("write");
      w += m;
    }
    done += n;
  }
  free(buf);
  return done;
}

static long long zcb__send_splice(int sock, int file, long long len) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) zcb__die("pipe2");
  /* A 1 MiB pipe lets one splice pair move as much as the copy loop's
   * buffer; the default 64 KiB pipe would cost 16x the calls. --chunk
   * sets another size (the kernel rounds it up to pages, a power of 2). */
  int size = zcb__chunk > 0 ? (int) zcb__chunk : CHUNK;
  int cap = fcntl(p[1], F_SETPIPE_SZ, size);
  if (cap < 0) cap = fcntl(p[1], F_GETPIPE_SZ);
  loff_t off = 0;
  while (off < len) {
    long long want = len - off;
    ssize_t in = splice(file, &off, p[1], NULL, want > cap ? cap : want,
                        SPLICE_F_MORE);
    if (in < 0 && errno == EINTR) continue;
    if (in < 0) zcb__die("splice file->pipe");
    if (in == 0) break;
    while (in > 0) {
      ssize_t out = splice(p[0], NULL, sock, NULL, in, SPLICE_F_MORE);
      if (out < 0 && errno == EINTR) continue;
      if (out < 0 && errno == EAGAIN) {
        zcb__wait_writable(sock);
        continue;
      }
      if (out < 0) zcb__die("splice pipe->socket");
      in -= out;
    }
  }
  close(p[0]);
  close(p[1]);
  return off;
}

static double zcb__tv(struct timeval tv) {
  return tv.tv_sec + tv.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  /* Options come first: --chunk N, --nonblock. */
  while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
    if (strcmp(argv[1], "--nonblock") == 0) {
      zcb__nonblock = 1;
    } else if (strcmp(argv[1], "--sndbuf") == 0 && argc > 2) {
      zcb__sndbuf = atoi(argv[2]);
      argv++;
      argc--;
    } else if (strcmp(argv[1], "--chunk") == 0 && argc > 2) {
      zcb__chunk = atoll(argv[2]);
      argv++;
      argc--;
    } else {
      fprintf(stderr, "unknown option: %s\n", argv[1]);
      return 2;
    }
    argv++;
    argc--;
  }
  if (argc < 4) {
    fprintf(stderr, "usage: send [--chunk N] [--nonblock] "
                    "sendfile|copy|splice ADDR FILE [LENGTH]\n");
    return 2;
  }
  const char *mode = argv[1];
  int file = open(argv[3], O_RDONLY | O_CLOEXEC);
  if (file < 0) zcb__die("open");
  struct stat st;
  if (fstat(file, &st) != 0) zcb__die("fstat");
  long long len = argc > 4 ? atoll(argv[4]) : (long long) st.st_size;

  int sock = zcb__connect(argv[2]);
  if (zcb__nonblock) fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK);
  if (zcb__sndbuf > 0 &&
      setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &zcb__sndbuf, sizeof(int)) != 0)
    zcb__die("setsockopt SO_SNDBUF");
  struct rusage r0, r1;
  double busy0 = zcb__machine_busy();
  getrusage(RUSAGE_SELF, &r0);
  double t0 = zcb__now();
  long long sent;
  if (strcmp(mode, "sendfile") == 0) {
    sent = zcb__send_sendfile(sock, file, len);
  } else if (strcmp(mode, "copy") == 0) {
    sent = zcb__send_copy(sock, file, len);
  } else if (strcmp(mode, "splice") == 0) {
    sent = zcb__send_splice(sock, file, len);
  } else {
    fprintf(stderr, "unknown mode: %s\n", mode);
    return 2;
  }
  /* Half-close, then wait for the receiver's close: it has read it all. */
  if (shutdown(sock, SHUT_WR) != 0) zcb__die("shutdown");
  char c;
  for (;;) {
    ssize_t r = read(sock, &c, 1);
    if (r < 0 && errno == EAGAIN) {
      struct pollfd p = { .fd = sock, .events = POLLIN };
      poll(&p, 1, -1);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
  }
  double t1 = zcb__now();
  getrusage(RUSAGE_SELF, &r1);
  double busy1 = zcb__machine_busy();
  printf("{\"impl\":\"c-%s\",\"bytes\":%lld,\"wallS\":%.6f,"
         "\"userS\":%.6f,\"sysS\":%.6f,\"machineBusyS\":%.3f,"
         "\"waits\":%ld}\n",
         mode, sent, t1 - t0,
         zcb__tv(r1.ru_utime) - zcb__tv(r0.ru_utime),
         zcb__tv(r1.ru_stime) - zcb__tv(r0.ru_stime), busy1 - busy0,
         zcb__waits);
  close(sock);
  return sent == len ? 0 : 3;
}
