/* The peer of bench/receive: connects to unix:PATH or HOST:PORT and writes
 * N bytes from one 1 MiB buffer, then closes. Usage: sender ADDR BYTES */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: sender ADDR BYTES\n");
    return 2;
  }
  long long total = atoll(argv[2]);
  int fd = zc_connect(argv[1]);
  if (fd < 0) {
    perror("connect");
    return 1;
  }
  size_t cap = 1 << 20;
  char* buf = malloc(cap);
  for (size_t i = 0; i < cap; i++) buf[i] = (char)(i * 131 + 7);
  long long sent = 0;
  while (sent < total) {
    size_t n = total - sent < (long long)cap ? (size_t)(total - sent) : cap;
    ssize_t w = write(fd, buf, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      perror("write");
      return 1;
    }
    sent += w;
  }
  close(fd);
  return 0;
}
