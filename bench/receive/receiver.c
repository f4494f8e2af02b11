/* The C references of bench/receive: accept one connection on ADDR and
 * write what arrives into OUT until EOF, either socket -> pipe -> file with
 * splice(2) or read(2)/write(2) through a 1 MiB buffer. Prints one JSON
 * line: bytes, wall ms, user/sys CPU ms of this process, wake-ups
 * (voluntary context switches). splice-nb is splice driven the way zcopy's
 * event loop drives it: a non-blocking socket, SPLICE_F_NONBLOCK, and
 * poll(2) on EAGAIN, in one thread. splice-nb-lowat[:BYTES] is splice-nb
 * after setsockopt(SO_RCVLOWAT, BYTES) (default 256 KiB): poll(2) on a TCP
 * socket then reports readable only once BYTES are queued (or FIN, or an
 * error), so each non-blocking pass moves more and there are fewer
 * wake-ups (the kernel also grows the receive buffer to fit). A Unix
 * socket's poll ignores SO_RCVLOWAT.
 * Usage: receiver splice|splice-nb|splice-nb-lowat[:BYTES]|rw ADDR OUT
 *   [fsync] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: receiver splice|splice-nb|splice-nb-lowat[:BYTES]"
                    "|rw ADDR OUT [fsync]\n");
    return 2;
  }
  int lowat = 0;
  if (strncmp(argv[1], "splice-nb-lowat", 15) == 0)
    lowat = argv[1][15] == ':' ? atoi(argv[1] + 16) : 256 << 10;
  int nb = lowat > 0 || strcmp(argv[1], "splice-nb") == 0;
  int use_splice = nb || strcmp(argv[1], "splice") == 0;
  int do_fsync = argc > 4 && strcmp(argv[4], "fsync") == 0;
  int ls = zc_listen(argv[2]);
  if (ls < 0) {
    perror("listen");
    return 1;
  }
  printf("{\"ready\":true}\n"); /* a JSON line, as bench/lib.mjs jsonChild reads */
  fflush(stdout);
  int s = accept(ls, NULL, NULL);
  int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (s < 0 || out < 0) {
    perror("accept/open");
    return 1;
  }
  double t0 = now_ms();
  long long total = 0;
  if (use_splice) {
    int p[2];
    if (pipe(p) < 0) return 1;
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    if (nb) fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    if (lowat > 0 &&
        setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) < 0) {
      perror("SO_RCVLOWAT");
      return 1;
    }
    for (;;) {
      ssize_t n = splice(s, NULL, p[1], NULL, 1 << 20,
                         SPLICE_F_MOVE | (nb ? SPLICE_F_NONBLOCK : 0));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN && nb) {
        struct pollfd pf = {.fd = s, .events = POLLIN};
        poll(&pf, 1, -1);
        continue;
      }
      if (n < 0) {
        perror("splice in");
        return 1;
      }
      if (n == 0) break;
      while (n > 0) {
        ssize_t w = splice(p[0], NULL, out, NULL, (size_t)n, SPLICE_F_MOVE);
        if (w <= 0) {
          perror("splice out");
          return 1;
        }
        n -= w;
        total += w;
      }
    }
  } else {
    size_t cap = 1 << 20;
    char* buf = malloc(cap);
    for (;;) {
      ssize_t n = read(s, buf, cap);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        perror("read");
        return 1;
      }
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(out, buf + off, (size_t)(n - off));
        if (w <= 0) {
          perror("write");
          return 1;
        }
        off += w;
      }
      total += n;
    }
  }
  if (do_fsync) fsync(out);
  double ms = now_ms() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"bytes\":%lld,\"ms\":%.1f,\"userMs\":%.1f,\"sysMs\":%.1f,"
         "\"wakeups\":%ld}\n", total, ms,
         ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3,
         ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3, ru.ru_nvcsw);
  return 0;
}
