/*
 * http-load: a keep-alive HTTP/1.1 load generator. One thread, epoll, N
 * connections, each sending the next GET as soon as the previous response
 * has been read in full; bodies are read into one 1 MiB scratch buffer and
 * dropped. It exists because wrk speaks TCP only, and because wrk reads 8 KiB
 * per read(2): with large bodies wrk itself saturates a core before a
 * sendfile server does.
 *
 * Usage: http-load unix:SOCKET|HOST:PORT PATH CONNECTIONS SECONDS
 * Prints one JSON line: requests, bytes (body), errors, seconds.
 *
 * Build: cc -O2 -o http-load http-load.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define HEAD_MAX 16384
#define SCRATCH (1 << 20)

struct conn {
  int fd;
  char head[HEAD_MAX];
  size_t head_len;
  long long body_left; /* -1 while reading the head */
  size_t req_sent;
};

static char scratch[SCRATCH];
static char request[1024];
static size_t request_len;
static const char *sock_path; /* unix:PATH */
static struct sockaddr_in tcp_addr; /* HOST:PORT */
static long long n_requests, n_bytes, n_errors;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int open_conn(int ep, struct conn *c) {
  int r;
  if (sock_path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, sock_path, sizeof a.sun_path - 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    /* Connect blocking (a local socket connects at once), then go
     * non-blocking for the load loop. */
    r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  } else {
    int one = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    r = connect(c->fd, (struct sockaddr *)&tcp_addr, sizeof tcp_addr);
  }
  if (r < 0) {
    close(c->fd);
    return -1;
  }
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  c->head_len = 0;
  c->body_left = -1;
  c->req_sent = 0;
  /* EPOLLIN only: requests are tiny and leave at once; EPOLLOUT is
   * watched only after an EAGAIN (level-triggered, it would spin). */
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
  return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void reopen(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  n_errors++;
  if (open_conn(ep, c) < 0) {
    fprintf(stderr, "http-load: reconnect failed: %s\n", strerror(errno));
    exit(1);
  }
}

/* Sends what remains of the request; 0 when fully sent. */
static int epfd;

static void watch(struct conn *c, unsigned events) {
  struct epoll_event ev = { .events = events, .data.ptr = c };
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int send_request(struct conn *c) {
  int waited = c->req_sent > 0;
  while (c->req_sent < request_len) {
    ssize_t n = write(c->fd, request + c->req_sent, request_len - c->req_sent);
    if (n < 0) {
      if (errno != EAGAIN) return -1;
      watch(c, EPOLLIN | EPOLLOUT);
      return 1;
    }
    c->req_sent += (size_t)n;
  }
  if (waited) watch(c, EPOLLIN);
  return 0;
}

/* Parses a complete head: status must be 200/206, Content-Length required. */
static long long parse_head(struct conn *c, size_t end) {
  c->head[end] = 0;
  if (strncmp(c->head, "HTTP/1.1 20", 11) != 0) return -1;
  char *p = strcasestr(c->head, "\r\ncontent-length:");
  if (!p) return -1;
  return atoll(p + 17);
}

/* Reads what is available; returns -1 on error/close. */
static int on_readable(struct conn *c) {
  for (;;) {
    if (c->body_left < 0) {
      ssize_t n = read(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len);
      if (n == 0) return -1;
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->head_len += (size_t)n;
      char *e = memmem(c->head, c->head_len, "\r\n\r\n", 4);
      if (!e) {
        if (c->head_len >= HEAD_MAX - 1) return -1;
        continue;
      }
      size_t hend = (size_t)(e - c->head) + 4;
      size_t extra = c->head_len - hend;
      long long cl = parse_head(c, hend - 2);
      if (cl < 0) return -1;
      if ((long long)extra > cl) return -1; /* no pipelining: nothing may follow */
      c->body_left = cl - (long long)extra;
      n_bytes += (long long)extra;
    } else if (c->body_left > 0) {
      size_t want = c->body_left < SCRATCH ? (size_t)c->body_left : SCRATCH;
      ssize_t n = read(c->fd, scratch, want);
      if (n == 0) return -1;
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->body_left -= n;
      n_bytes += n;
    }
    if (c->body_left == 0) {
      n_requests++;
      c->head_len = 0;
      c->body_left = -1;
      c->req_sent = 0;
      int r = send_request(c);
      if (r < 0) return -1;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: http-load unix:SOCKET|HOST:PORT PATH CONNECTIONS SECONDS\n");
    return 2;
  }
  if (strncmp(argv[1], "unix:", 5) == 0) {
    sock_path = argv[1] + 5;
  } else {
    char host[64];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host) {
      fprintf(stderr, "http-load: target must be unix:PATH or HOST:PORT\n");
      return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = 0;
    tcp_addr.sin_family = AF_INET;
    tcp_addr.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &tcp_addr.sin_addr) != 1) {
      fprintf(stderr, "http-load: bad IPv4 address %s\n", host);
      return 2;
    }
  }
  int nconn = atoi(argv[3]);
  double secs = atof(argv[4]);
  request_len = (size_t)snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", argv[2]);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epfd = ep;
  struct conn *conns = calloc((size_t)nconn, sizeof *conns);
  for (int i = 0; i < nconn; i++) {
    if (open_conn(ep, &conns[i]) < 0) {
      fprintf(stderr, "http-load: connect %s: %s\n", argv[1], strerror(errno));
      return 1;
    }
    if (send_request(&conns[i]) < 0) return 1;
  }
  struct epoll_event evs[256];
  double start = now();
  double deadline = start + secs;
  for (;;) {
    double t = now();
    if (t >= deadline) break;
    int timeout = (int)((deadline - t) * 1000) + 1;
    int n = epoll_wait(ep, evs, 256, timeout);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->req_sent < request_len && send_request(c) < 0) {
        reopen(ep, c);
        continue;
      }
      if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && on_readable(c) < 0) reopen(ep, c);
    }
  }
  double elapsed = now() - start;
  printf("{\"requests\":%lld,\"bytes\":%lld,\"errors\":%lld,\"seconds\":%.3f}\n", n_requests, n_bytes, n_errors, elapsed);
  return 0;
}
