/*
 * Request-response client for the crossover bench: on one keep-alive TCP
 * connection, sends a 1-byte request and reads a response of exactly
 * RESPONSE bytes, again and again, for a warm-up then a measured period.
 *
 *   rr-client tcp:PORT RESPONSE SECONDS [WARMUP_SECONDS]
 *
 * Prints {"requests":N,"seconds":S,"rps":R,"p50Us":..,"p99Us":..}.
 */
#include "common.h"

#include <signal.h>

#define BUF (1 << 20)
#define MAX_SAMPLES 4000000

static int zcb__cmp(const void *a, const void *b) {
  float x = *(const float *) a, y = *(const float *) b;
  return x < y ? -1 : x > y;
}

static void zcb__roundtrip(int fd, long long resp, char *buf) {
  for (;;) {
    ssize_t w = write(fd, "R", 1);
    if (w == 1) break;
    if (w < 0 && errno == EINTR) continue;
    zcb__die("write");
  }
  long long got = 0;
  while (got < resp) {
    long long want = resp - got;
    ssize_t r = read(fd, buf, want > BUF ? BUF : want);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) zcb__die("read");
    if (r == 0) {
      fprintf(stderr, "server closed after %lld of %lld bytes\n", got, resp);
      exit(3);
    }
    got += r;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: rr-client tcp:PORT RESPONSE SECONDS [WARMUP]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  long long resp = atoll(argv[2]);
  double secs = atof(argv[3]);
  double warm = argc > 4 ? atof(argv[4]) : 0.2;
  int fd = zcb__connect(argv[1]);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  static char buf[BUF];
  float *lat = malloc(sizeof(float) * MAX_SAMPLES);
  if (lat == NULL) zcb__die("malloc");

  double end = zcb__now() + warm;
  while (zcb__now() < end) zcb__roundtrip(fd, resp, buf);
  long n = 0;
  double t0 = zcb__now(), t = t0;
  end = t0 + secs;
  while (t < end && n < MAX_SAMPLES) {
    zcb__roundtrip(fd, resp, buf);
    double t2 = zcb__now();
    lat[n++] = (float) ((t2 - t) * 1e6);
    t = t2;
  }
  double el = t - t0;
  qsort(lat, n, sizeof(float), zcb__cmp);
  printf("{\"requests\":%ld,\"seconds\":%.6f,\"rps\":%.1f,"
         "\"p50Us\":%.1f,\"p99Us\":%.1f}\n",
         n, el, n / el, n ? lat[n / 2] : 0.0, n ? lat[(n * 99) / 100] : 0.0);
  close(fd);
  return 0;
}
