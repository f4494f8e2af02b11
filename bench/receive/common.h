/* Address parsing shared by the C peers of bench/receive. */
#ifndef BENCH_RECEIVE_COMMON_H_
#define BENCH_RECEIVE_COMMON_H_
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Fills a sockaddr for "unix:PATH" or "HOST:PORT"; returns its length. */
static inline socklen_t zc_addr(const char* a, struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof(*ss));
  if (strncmp(a, "unix:", 5) == 0) {
    struct sockaddr_un* un = (struct sockaddr_un*)ss;
    un->sun_family = AF_UNIX;
    strncpy(un->sun_path, a + 5, sizeof(un->sun_path) - 1);
    return sizeof(*un);
  }
  char host[256];
  const char* c = strrchr(a, ':');
  if (c == NULL || (size_t)(c - a) >= sizeof(host)) return 0;
  memcpy(host, a, (size_t)(c - a));
  host[c - a] = 0;
  struct sockaddr_in* in = (struct sockaddr_in*)ss;
  in->sin_family = AF_INET;
  in->sin_port = htons((unsigned short)atoi(c + 1));
  if (inet_pton(AF_INET, host, &in->sin_addr) != 1) return 0;
  return sizeof(*in);
}

static inline int zc_connect(const char* a) {
  struct sockaddr_storage ss;
  socklen_t len = zc_addr(a, &ss);
  if (len == 0) return -1;
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr*)&ss, len) < 0) return -1;
  return fd;
}

static inline int zc_listen(const char* a) {
  struct sockaddr_storage ss;
  socklen_t len = zc_addr(a, &ss);
  if (len == 0) return -1;
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ss.ss_family == AF_UNIX) unlink(((struct sockaddr_un*)&ss)->sun_path);
  if (bind(fd, (struct sockaddr*)&ss, len) < 0 || listen(fd, 4) < 0) return -1;
  return fd;
}
#endif
