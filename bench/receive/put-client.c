/* The client of bench/receive/upload.mjs: one HTTP/1.1 PUT of BYTES bytes
 * (from one 1 MiB buffer, with a Content-Length) to ADDR (unix:PATH or
 * HOST:PORT) at URL_PATH, then reads the answer's head and body and closes.
 * Prints one JSON line: status, wall ms from connect to the end of the
 * answer. Usage: put-client ADDR URL_PATH BYTES */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: put-client ADDR URL_PATH BYTES\n");
    return 2;
  }
  long long total = atoll(argv[3]);
  size_t cap = 1 << 20;
  char* buf = malloc(cap);
  for (size_t i = 0; i < cap; i++) buf[i] = (char)(i * 131 + 7);
  double t0 = now_ms();
  int fd = zc_connect(argv[1]);
  if (fd < 0) {
    perror("connect");
    return 1;
  }
  char head[512];
  int hn = snprintf(head, sizeof(head),
                    "PUT %s HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                    "application/octet-stream\r\nContent-Length: %lld\r\n\r\n",
                    argv[2], total);
  if (write_all(fd, head, (size_t)hn) < 0) {
    perror("write");
    return 1;
  }
  for (long long sent = 0; sent < total;) {
    size_t n = total - sent < (long long)cap ? (size_t)(total - sent) : cap;
    if (write_all(fd, buf, n) < 0) {
      perror("write");
      return 1;
    }
    sent += (long long)n;
  }
  /* The answer: a head, then Content-Length bytes (all small here). */
  char in[8192];
  size_t got = 0;
  char* end = NULL;
  while (end == NULL) {
    ssize_t r = read(fd, in + got, sizeof(in) - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      fprintf(stderr, "put-client: connection ended before the answer\n");
      return 1;
    }
    got += (size_t)r;
    in[got] = 0;
    end = strstr(in, "\r\n\r\n");
    if (end == NULL && got == sizeof(in) - 1) return 1;
  }
  int status = atoi(in + 9);
  long long clen = 0;
  char* cl = strcasestr(in, "\r\ncontent-length:");
  if (cl != NULL && cl < end) clen = atoll(cl + 17);
  long long body = (long long)(in + got - (end + 4));
  while (body < clen) {
    ssize_t r = read(fd, in, sizeof(in));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    body += r;
  }
  double ms = now_ms() - t0;
  close(fd);
  printf("{\"status\":%d,\"ms\":%.1f}\n", status, ms);
  return 0;
}
