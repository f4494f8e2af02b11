/*
 * The raw Kafka fetch client of bench/kafka: issues Fetch v4 requests for
 * one topic-partition with large max_bytes, one in flight, and reads each
 * response into a 1 MiB buffer that is thrown away (the same receive loop as
 * sink.c, so the broker is measured against the C references with the same
 * receiver). Prints one JSON line: records fetched, bytes, wall time, CPU.
 *
 *   kafka-fetch tcp:PORT TOPIC TOTAL_RECORDS BATCH_BYTES RECORDS_PER_BATCH [MAX_BYTES]
 *
 * The bench's batches are uniform, so the next fetch offset is the number of
 * whole batches in the record set times RECORDS_PER_BATCH (a trailing partial
 * batch is fetched again, as a real client does).
 */
#include "common.h"

#include <sys/resource.h>

#define BUF (1 << 20)

static void read_full(int fd, void *p, size_t n) {
  char *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) zcb__die("read");
    if (r == 0) {
      fprintf(stderr, "read: broker closed the connection\n");
      exit(1);
    }
    c += r;
    n -= (size_t) r;
  }
}

static void write_full(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) zcb__die("write");
    c += w;
    n -= (size_t) w;
  }
}

static char *put16(char *p, int v) { p[0] = (char) (v >> 8); p[1] = (char) v; return p + 2; }
static char *put32(char *p, long v) {
  for (int i = 3; i >= 0; i--) p[3 - i] = (char) (v >> (8 * i));
  return p + 4;
}
static char *put64(char *p, long long v) {
  for (int i = 7; i >= 0; i--) p[7 - i] = (char) (v >> (8 * i));
  return p + 8;
}
static long get32(const unsigned char *p) {
  return (long) (int) ((unsigned) p[0] << 24 | (unsigned) p[1] << 16 | (unsigned) p[2] << 8 | p[3]);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: kafka-fetch tcp:PORT TOPIC TOTAL_RECORDS BATCH_BYTES RECORDS_PER_BATCH [MAX_BYTES]\n");
    return 2;
  }
  const char *topic = argv[2];
  long long total = atoll(argv[3]);
  long long batchBytes = atoll(argv[4]);
  long long perBatch = atoll(argv[5]);
  long maxBytes = argc > 6 ? atol(argv[6]) : 64L << 20;
  size_t tlen = strlen(topic);
  if (tlen > 200 || batchBytes <= 0 || perBatch <= 0) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }

  struct sockaddr_storage ss;
  socklen_t len;
  int fd = zcb__socket(argv[1], &ss, &len);
  if (fd < 0) zcb__die("socket");
  if (connect(fd, (struct sockaddr *) &ss, len) != 0) zcb__die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  static char buf[BUF];
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = zcb__now();
  long long offset = 0, bytes = 0, fetches = 0;
  int corr = 0;
  /* Response up to the record set's length: correlation id, throttle,
   * [topic count, topic, [partition count, partition, error, high watermark,
   * last stable offset, aborted transactions (-1), records length]]. */
  size_t head = 4 + 4 + 4 + 2 + tlen + 4 + 4 + 2 + 8 + 8 + 4 + 4;
  while (offset < total) {
    char req[512], *p = req + 4;
    p = put16(p, 1);            /* Fetch */
    p = put16(p, 4);            /* v4 */
    p = put32(p, ++corr);
    p = put16(p, 5);
    memcpy(p, "bench", 5);
    p += 5;
    p = put32(p, -1);           /* replica id */
    p = put32(p, 500);          /* max wait ms */
    p = put32(p, 1);            /* min bytes */
    p = put32(p, maxBytes);     /* max bytes */
    *p++ = 0;                   /* isolation level */
    p = put32(p, 1);
    p = put16(p, (int) tlen);
    memcpy(p, topic, tlen);
    p += tlen;
    p = put32(p, 1);
    p = put32(p, 0);            /* partition */
    p = put64(p, offset);
    p = put32(p, maxBytes);     /* partition max bytes */
    put32(req, (long) (p - req - 4));
    write_full(fd, req, (size_t) (p - req));

    unsigned char h[4 + 512];
    read_full(fd, h, 4);
    long size = get32(h);
    if (size < (long) head || size > maxBytes + 4096) {
      fprintf(stderr, "unexpected response size %ld\n", size);
      return 1;
    }
    read_full(fd, h + 4, head);
    if (get32(h + 4) != corr) {
      fprintf(stderr, "correlation id %ld, expected %d\n", get32(h + 4), corr);
      return 1;
    }
    int err = (h[4 + 4 + 4 + 4 + 2 + tlen + 4 + 4] << 8) | h[4 + 4 + 4 + 4 + 2 + tlen + 4 + 4 + 1];
    if (err != 0) {
      fprintf(stderr, "fetch error code %d at offset %lld\n", err, offset);
      return 1;
    }
    long rec = get32(h + 4 + head - 4);
    if (rec < 0 || (long) head + rec != size) {
      fprintf(stderr, "record set length %ld does not match the response size %ld\n", rec, size);
      return 1;
    }
    long left = rec;
    while (left > 0) {
      ssize_t r = read(fd, buf, left < BUF ? (size_t) left : BUF);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) zcb__die("read");
      if (r == 0) {
        fprintf(stderr, "broker closed the connection mid-response\n");
        return 1;
      }
      left -= r;
    }
    bytes += rec;
    fetches++;
    offset += (rec / batchBytes) * perBatch;
  }
  double t1 = zcb__now();
  getrusage(RUSAGE_SELF, &r1);
  printf("{\"records\":%lld,\"bytes\":%lld,\"fetches\":%lld,\"wallS\":%.6f,\"cpuS\":%.6f}\n",
         offset, bytes, fetches, t1 - t0,
         r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
         r1.ru_stime.tv_sec - r0.ru_stime.tv_sec + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6);
  close(fd);
  return 0;
}
