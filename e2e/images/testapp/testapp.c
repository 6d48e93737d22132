/* Test workload: a TCP server that answers every connection (HTTP or not)
 * with one line naming the client's address and its own hostname:
 *   client=10.16.0.5:41234 server=testapp-7c9 port=8080
 * HTTP requests get that line as an HTTP/1.0 response body. One process per
 * connection; port from argv[1] or $PORT (default 8080). The same port
 * answers UDP datagrams with the same line (ending in " udp").
 *
 * `GET /bytes/N` instead gets N bytes of a fixed pseudo-random stream, which
 * `testapp bytes N` prints to stdout: a transfer is intact when both hash the
 * same.
 *
 * A connection that starts with "ECHO" gets everything it sends echoed back
 * until it closes: a long-lived stream. `testapp tcp-ping IP PORT INTERVAL_MS
 * SECONDS` is its client: one connection, a line every INTERVAL_MS; prints
 *   <unix ms> ok <bytes echoed so far>   or   <unix ms> wait
 * per line, `<unix ms> reset` (exit 3) if the connection breaks, and at the
 * end `done sent=N received=M` once every byte came back (exit 0; 4 if not
 * within 15 s).
 *
 * `testapp udp-ping IP PORT INTERVAL_MS SECONDS` is the matching client: one
 * socket, so one source port (one conntrack entry) for the whole run, a
 * datagram every INTERVAL_MS; prints per datagram
 *   <unix ms> server=<name>   or   <unix ms> timeout */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int listen_on(int port) {
  int one = 1, zero = 0;
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  if (fd >= 0) {
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(fd, 128) == 0) return fd;
    close(fd);
  }
  fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0 || listen(fd, 128) != 0) {
    perror("listen");
    exit(1);
  }
  return fd;
}

/* The fixed stream of `bytes`: xorshift32 from a constant seed. */
static void write_stream(int fd, long long n) {
  static unsigned char buf[65536];
  unsigned int x = 2463534242u;
  while (n > 0) {
    size_t len = n < (long long)sizeof buf ? (size_t)n : sizeof buf;
    for (size_t i = 0; i < len; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      buf[i] = (unsigned char)x;
    }
    for (size_t off = 0; off < len;) {
      ssize_t w = write(fd, buf + off, len - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        perror("write");
        return;
      }
      off += (size_t)w;
    }
    n -= (long long)len;
  }
}

static void serve(int c, int port) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char addr[INET6_ADDRSTRLEN] = "?", host[256] = "?", req[4096], body[512], out[1024];
  int peer_port = 0;
  getpeername(c, (struct sockaddr *)&ss, &len);
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
      inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], addr, sizeof addr);
    else
      inet_ntop(AF_INET6, &s->sin6_addr, addr, sizeof addr);
    peer_port = ntohs(s->sin6_port);
  } else {
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s->sin_addr, addr, sizeof addr);
    peer_port = ntohs(s->sin_port);
  }
  gethostname(host, sizeof host - 1);
  struct timeval tv = {.tv_sec = 2};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recv(c, req, sizeof req - 1, 0);
  int http = n > 0 && (strncmp(req, "GET ", 4) == 0 || strncmp(req, "HEAD ", 5) == 0 || strncmp(req, "POST ", 5) == 0);
  long long want;
  if (n >= 4 && strncmp(req, "ECHO", 4) == 0) {
    struct timeval none = {0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    while (n > 0) {
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(c, req + off, (size_t)(n - off));
        if (w < 0) {
          if (errno == EINTR) continue;
          close(c);
          return;
        }
        off += w;
      }
      do n = recv(c, req, sizeof req, 0);
      while (n < 0 && errno == EINTR);
    }
    close(c);
    return;
  }
  if (n > 0 && sscanf(req, "GET /bytes/%lld ", &want) == 1 && want >= 0) {
    int hlen = snprintf(out, sizeof out,
                        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %lld\r\n"
                        "Connection: close\r\n\r\n",
                        want);
    if (write(c, out, hlen) == hlen) write_stream(c, want);
    shutdown(c, SHUT_WR);
    close(c);
    return;
  }
  int blen = snprintf(body, sizeof body, "client=%s:%d server=%s port=%d\n", addr, peer_port, host, port);
  int olen = http ? snprintf(out, sizeof out,
                             "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                             blen, body)
                  : snprintf(out, sizeof out, "%s", body);
  if (write(c, out, olen) < 0) perror("write");
  shutdown(c, SHUT_WR);
  close(c);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void udp_serve(int port) {
  int zero = 0;
  char host[256] = "?", buf[2048], out[512], addr[INET6_ADDRSTRLEN];
  gethostname(host, sizeof host - 1);
  int fd = socket(AF_INET6, SOCK_DGRAM, 0);
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
  if (fd >= 0) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a6, sizeof a6) != 0) {
    if (fd >= 0) close(fd);
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
      perror("udp bind");
      _exit(1);
    }
  }
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&ss, &len) < 0) continue;
    int peer = 0;
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
      if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
        inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], addr, sizeof addr);
      else
        inet_ntop(AF_INET6, &s->sin6_addr, addr, sizeof addr);
      peer = ntohs(s->sin6_port);
    } else {
      struct sockaddr_in *s = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &s->sin_addr, addr, sizeof addr);
      peer = ntohs(s->sin_port);
    }
    int n = snprintf(out, sizeof out, "client=%s:%d server=%s port=%d udp\n", addr, peer, host, port);
    sendto(fd, out, n, 0, (struct sockaddr *)&ss, len);
  }
}

static int udp_ping(const char *ip, int port, int interval_ms, int seconds) {
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, ip, &a4.sin_addr) != 1) {
    fprintf(stderr, "udp-ping: not an IPv4 address: %s\n", ip);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
    perror("udp-ping");
    return 1;
  }
  struct timeval tv = {.tv_sec = interval_ms / 1000, .tv_usec = (interval_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  long long end = now_ms() + (long long)seconds * 1000;
  char buf[2048];
  while (now_ms() < end) {
    long long sent = now_ms();
    if (send(fd, "ping", 4, 0) < 0 && errno != ECONNREFUSED) perror("send");
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    const char *server = NULL;
    if (n > 0) {
      buf[n] = 0;
      char *s = strstr(buf, "server=");
      if (s) {
        server = s;
        s[strcspn(s, " \n")] = 0;
      }
    }
    if (server)
      printf("%lld %s\n", sent, server);
    else
      printf("%lld timeout\n", sent);
    long long left = sent + interval_ms - now_ms();
    if (left > 0) usleep(left * 1000);
  }
  return 0;
}

static int tcp_ping(const char *ip, int port, int interval_ms, int seconds) {
  struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, ip, &a4.sin_addr) != 1) {
    fprintf(stderr, "tcp-ping: not an IPv4 address: %s\n", ip);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a4, sizeof a4) != 0) {
    perror("tcp-ping");
    return 1;
  }
  struct timeval tv = {.tv_sec = interval_ms / 1000, .tv_usec = (interval_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  long long sent = 0, got = 0, end = now_ms() + (long long)seconds * 1000;
  char line[64], buf[4096];
  for (long long i = 0; now_ms() < end; i++) {
    long long t = now_ms();
    int len = snprintf(line, sizeof line, i == 0 ? "ECHO %lld\n" : "tick %lld\n", i);
    if (write(fd, line, len) != len) {
      printf("%lld reset\n", t);
      return 3;
    }
    sent += len;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      printf("%lld reset\n", t);
      return 3;
    }
    if (n > 0) got += n;
    printf(n > 0 ? "%lld ok %lld\n" : "%lld wait\n", t, got);
    long long left = t + interval_ms - now_ms();
    if (left > 0) usleep(left * 1000);
  }
  long long drain = now_ms() + 15000;
  while (got < sent && now_ms() < drain) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      printf("%lld reset\n", now_ms());
      return 3;
    }
    if (n > 0) got += n;
  }
  printf("done sent=%lld received=%lld\n", sent, got);
  close(fd);
  return got == sent ? 0 : 4;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "bytes") == 0) {
    write_stream(1, atoll(argv[2]));
    return 0;
  }
  if (argc == 6 && strcmp(argv[1], "tcp-ping") == 0)
    return tcp_ping(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  if (argc == 6 && strcmp(argv[1], "udp-ping") == 0)
    return udp_ping(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  const char *p = argc > 1 ? argv[1] : getenv("PORT");
  int port = p ? atoi(p) : 8080;
  signal(SIGCHLD, SIG_IGN); /* children are reaped automatically */
  int fd = listen_on(port);
  if (fork() == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* ends with the TCP server */
    close(fd);
    udp_serve(port);
  }
  fprintf(stderr, "testapp listening on :%d (tcp and udp)\n", port);
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      perror("accept");
      continue;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(fd);
      serve(c, port);
      _exit(0);
    }
    close(c);
  }
}
