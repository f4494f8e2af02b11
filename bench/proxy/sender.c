/* Benchmark sender: opens `streams` connections to a TCP host:port or a Unix
 * socket path and writes `bytes` to each from one 1 MiB buffer, all at once
 * (non-blocking, poll), then shuts each down for writing and waits for the
 * peer's EOF so the last byte is known to have left. C, so the sender is
 * never what limits a proxy's throughput.
 *
 * usage: sender (tcp HOST PORT | unix PATH) BYTES STREAMS
 * prints: {"bytes":N,"seconds":S}
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF (1 << 20)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(const char* kind, const char* a, const char* b) {
  int fd;
  if (strcmp(kind, "unix") == 0) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, a, sizeof(sa.sun_path) - 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      perror("connect");
      exit(1);
    }
  } else {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(b))};
    inet_pton(AF_INET, a, &sa.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      perror("connect");
      exit(1);
    }
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

int main(int argc, char** argv) {
  int unix_sock = argc > 1 && strcmp(argv[1], "unix") == 0;
  if (argc != (unix_sock ? 5 : 6)) {
    fprintf(stderr, "usage: sender (tcp HOST PORT | unix PATH) BYTES STREAMS\n");
    return 2;
  }
  long long bytes = atoll(argv[unix_sock ? 3 : 4]);
  int streams = atoi(argv[unix_sock ? 4 : 5]);
  char* buf = malloc(BUF);
  for (int i = 0; i < BUF; i++) buf[i] = (char)(i * 131 + 7);
  struct pollfd* pfd = calloc(streams, sizeof(*pfd));
  long long* left = calloc(streams, sizeof(*left));
  double t0 = now();
  for (int i = 0; i < streams; i++) {
    pfd[i].fd = dial(argv[1], argv[2], unix_sock ? NULL : argv[3]);
    pfd[i].events = POLLOUT;
    left[i] = bytes;
  }
  int active = streams;
  while (active > 0) {
    if (poll(pfd, streams, 60000) <= 0) {
      fprintf(stderr, "sender: poll timeout or error\n");
      return 1;
    }
    for (int i = 0; i < streams; i++) {
      if (pfd[i].fd < 0 || pfd[i].revents == 0) continue;
      if (left[i] > 0) {
        for (;;) {
          /* Continue the pattern where the last (maybe short) send left it. */
          size_t pos = (size_t)((bytes - left[i]) % BUF);
          size_t n = BUF - pos;
          if ((long long)n > left[i]) n = (size_t)left[i];
          ssize_t w = send(pfd[i].fd, buf + pos, n, MSG_NOSIGNAL);
          if (w < 0) {
            if (errno == EAGAIN) break;
            perror("send");
            return 1;
          }
          left[i] -= w;
          if (left[i] == 0) {
            shutdown(pfd[i].fd, SHUT_WR);
            pfd[i].events = POLLIN;
            break;
          }
        }
      } else {
        /* Waiting for the receiver's EOF: everything got through. */
        char tmp[4096];
        ssize_t r = recv(pfd[i].fd, tmp, sizeof(tmp), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
          close(pfd[i].fd);
          pfd[i].fd = -1;
          active--;
        }
      }
    }
  }
  printf("{\"bytes\":%lld,\"seconds\":%.6f}\n", bytes * streams, now() - t0);
  return 0;
}
