/*
 * Helpers shared by the benchmark's C programs: address parsing, a
 * monotonic clock and fatal-error reporting. The programs are references
 * for the physical limit, so they use plain blocking sockets.
 */
#ifndef ZC_BENCH_COMMON_H
#define ZC_BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static inline void zcb__die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

static inline double zcb__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * CPU-seconds all CPUs spent busy (user, nice, system, irq, softirq) since
 * boot, from /proc/stat. The harness subtracts the sender's and the
 * receiver's own CPU from the difference over a run: what remains is other
 * processes competing for the two cores, which makes a run noisy. Softirq
 * time counts because the tasks' system time includes the loopback receive
 * work done in their context; steal (the hypervisor's) does not.
 */
static inline double zcb__machine_busy(void) {
  unsigned long long v[8] = { 0 };
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return -1;
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                 &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n < 5) return -1;
  unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6];
  return (double) busy / sysconf(_SC_CLK_TCK);
}

/*
 * An address is "tcp:PORT" (always 127.0.0.1: the bench never listens
 * elsewhere) or "unix:PATH".
 */
static inline int zcb__socket(const char *addr, struct sockaddr_storage *ss,
                       socklen_t *len) {
  memset(ss, 0, sizeof(*ss));
  if (strncmp(addr, "tcp:", 4) == 0) {
    struct sockaddr_in *in = (struct sockaddr_in *) ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((unsigned short) atoi(addr + 4));
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof(*in);
    return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  if (strncmp(addr, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *) ss;
    if (strlen(addr + 5) >= sizeof(un->sun_path)) {
      fprintf(stderr, "unix socket path too long: %s\n", addr + 5);
      exit(2);
    }
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, addr + 5);
    *len = sizeof(*un);
    return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  }
  fprintf(stderr, "bad address (want tcp:PORT or unix:PATH): %s\n", addr);
  exit(2);
}

static inline int zcb__connect(const char *addr) {
  struct sockaddr_storage ss;
  socklen_t len;
  int fd = zcb__socket(addr, &ss, &len);
  if (fd < 0) zcb__die("socket");
  if (connect(fd, (struct sockaddr *) &ss, len) != 0) zcb__die("connect");
  return fd;
}

#endif
