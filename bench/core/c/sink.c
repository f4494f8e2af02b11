/*
 * Receiver for the benchmark: accepts connections one at a time, reads
 * each to EOF into a 1 MiB buffer, counts the bytes and prints one JSON
 * line per connection (bytes, wall time, its own CPU), then closes it (the
 * sender waits for that close).
 *
 *   sink ADDR [--expect N] [--conns K]
 *
 * ADDR is tcp:PORT (port 0 picks one) or unix:PATH. The first line on
 * stdout is {"listening":"tcp:PORT"} once the socket accepts. With
 * --expect N the sink writes one byte back ("ack") and notes the time
 * when N bytes of a connection have arrived, and exits once that
 * connection closes (a caller waiting for the sink to exit is not left
 * hanging). With --conns K it exits after K connections; otherwise it runs
 * until killed, or until its parent exits.
 */
#include "common.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define BUF (1 << 20)

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sink ADDR [--expect N] [--conns K]\n");
    return 2;
  }
  long long expect = -1;
  long conns = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--expect") == 0) expect = atoll(argv[i + 1]);
    else if (strcmp(argv[i], "--conns") == 0) conns = atol(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option: %s\n", argv[i]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  /* Blocked in accept(), the sink would outlive a harness killed with ^C. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);

  struct sockaddr_storage ss;
  socklen_t len;
  int lfd = zcb__socket(argv[1], &ss, &len);
  if (lfd < 0) zcb__die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ss.ss_family == AF_UNIX) unlink(((struct sockaddr_un *) &ss)->sun_path);
  if (bind(lfd, (struct sockaddr *) &ss, len) != 0) zcb__die("bind");
  if (listen(lfd, 16) != 0) zcb__die("listen");
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in in;
    socklen_t il = sizeof(in);
    getsockname(lfd, (struct sockaddr *) &in, &il);
    printf("{\"listening\":\"tcp:%d\"}\n", ntohs(in.sin_port));
  } else {
    printf("{\"listening\":\"%s\"}\n", argv[1]);
  }
  fflush(stdout);

  static char buf[BUF];
  for (long n = 0; conns < 0 || n < conns; n++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR) continue;
    if (fd < 0) zcb__die("accept");
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = zcb__now(), tExpect = -1;
    long long total = 0;
    for (;;) {
      ssize_t r = read(fd, buf, BUF);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        fprintf(stderr, "read: %s\n", strerror(errno));
        break;
      }
      if (r == 0) break;
      long long before = total;
      total += r;
      if (expect >= 0 && before < expect && total >= expect) {
        tExpect = zcb__now() - t0;
        if (write(fd, "A", 1) < 0) {}
      }
    }
    double t1 = zcb__now();
    getrusage(RUSAGE_SELF, &r1);
    close(fd);
    printf("{\"conn\":%ld,\"bytes\":%lld,\"wallS\":%.6f,\"cpuS\":%.6f",
           n, total, t1 - t0,
           r1.ru_utime.tv_sec - r0.ru_utime.tv_sec +
           (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
           r1.ru_stime.tv_sec - r0.ru_stime.tv_sec +
           (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6);
    if (tExpect >= 0) printf(",\"expectS\":%.6f", tExpect);
    printf("}\n");
    fflush(stdout);
    if (expect >= 0 && conns < 0 && tExpect >= 0) break;
  }
  return 0;
}
