/* Benchmark receiver: listens on a TCP port (127.0.0.1) or a Unix socket
 * path, accepts connections and reads each to EOF with a 1 MiB buffer,
 * checking the sender's byte pattern, then closes it (the sender waits for
 * that EOF). Runs until killed; prints "ready <port|path>" once listening
 * (port 0: the kernel picks one).
 *
 * usage: receiver (tcp PORT | unix PATH)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF (1 << 20)

typedef struct {
  int fd;
  long long got;
} conn;

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: receiver (tcp PORT | unix PATH)\n");
    return 2;
  }
  int lfd;
  if (strcmp(argv[1], "unix") == 0) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, argv[2], sizeof(sa.sun_path) - 1);
    unlink(argv[2]);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(lfd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      perror("bind");
      return 1;
    }
  } else {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr*)&sa, sizeof(sa)) < 0) {
      perror("bind");
      return 1;
    }
  }
  if (listen(lfd, 1024) < 0) {
    perror("listen");
    return 1;
  }
  /* Report the port the kernel chose (port 0) or the path. */
  if (strcmp(argv[1], "unix") == 0) {
    printf("ready %s\n", argv[2]);
  } else {
    struct sockaddr_in got;
    socklen_t gl = sizeof(got);
    getsockname(lfd, (struct sockaddr*)&got, &gl);
    printf("ready %d\n", ntohs(got.sin_port));
  }
  fflush(stdout);
  char* buf = malloc(BUF);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      conn* c = evs[i].data.ptr;
      if (c == NULL) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) continue;
        c = calloc(1, sizeof(*c));
        c->fd = fd;
        struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        continue;
      }
      for (;;) {
        ssize_t r = recv(c->fd, buf, BUF, 0);
        if (r > 0) {
          /* Spot-check the pattern: one byte per read. */
          long long off = c->got % BUF;
          if (buf[0] != (char)(off * 131 + 7)) {
            fprintf(stderr, "receiver: corrupt byte at %lld\n", c->got);
            return 1;
          }
          c->got += r;
          continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        close(c->fd);
        free(c);
        break;
      }
    }
  }
}
