/* Sockets whose whole state is in the process (issue 9). Each mode sets one kind up, and after
 * the restore checks it is the same: names, peers, options, what was queued and passed.
 *   t_sockets udp           fd 3: UDP bound to 127.0.0.1 (options set), fd 4: UDP connected to it
 *   t_sockets udp6          the same over ::1 (77 without IPv6)
 *   t_sockets tcp-listen    fd 3: TCP listening on 127.0.0.1 (backlog 7, options set)
 *   t_sockets pair-stream | pair-dgram | pair-seqpacket
 *                           fds 3, 4: a socketpair with messages queued both ways, one passing
 *                           fd 5 (a pipe's read end, fd 6 its write end); fd 4 shut for writing
 *   t_sockets unix-path DIR fd 3: stream listening on DIR/s; fd 4: datagram bound to DIR/d with
 *                           a datagram queued; fd 5: datagram connected to DIR/d
 *   t_sockets unix-abstract the same under abstract names
 *   t_sockets dead-peer     fd 3: a stream whose peer wrote "bye" and closed
 *   t_sockets pty           fds 3, 4: a pseudo-terminal master and its slave, raw, 33x77
 *   t_sockets udp-node      fd 3: UDP bound to this host's first address other than loopback
 *   t_sockets unix-accepted DIR  fd 3: stream listening on DIR/a; fd 4: a client connected to
 *                           it, fd 5: the connection accepted; a message queued each way */
#include "target.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pty.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>

static int at(int fd, int want) {
  if (fd < 0) return -1;
  if (fd == want) return 0;
  if (dup2(fd, want) != want) return -1;
  close(fd);
  return 0;
}

static int int_opt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  getsockopt(fd, level, name, &v, &len);
  return v;
}

static socklen_t unix_addr(struct sockaddr_un* a, const char* dir, const char* leaf, int abstract) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (abstract) {
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "ferry-test-%d-%s", (int)getpid(),
                     leaf);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  }
  snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, leaf);
  return (socklen_t)sizeof *a;
}

static int send_fd(int sock, const char* data, int fd) {
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {(void*)data, strlen(data)};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                     .msg_controllen = sizeof control};
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(sock, &m, 0) == (ssize_t)strlen(data) ? 0 : -1;
}

/* Reads one message; *fd gets a passed descriptor or -1. */
static ssize_t recv_fd(int sock, char* buf, size_t len, int* fd) {
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {buf, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                     .msg_controllen = sizeof control};
  ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT);
  *fd = -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  if (n >= 0 && c && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

static int port_of(int fd) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr*)&a, &len) != 0) return -1;
  return ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in*)&a)->sin_port
                                      : ((struct sockaddr_in6*)&a)->sin6_port);
}

static int check_udp(int v6, int setup, int* port) {
  if (setup) {
    int fam = v6 ? AF_INET6 : AF_INET;
    int b = socket(fam, SOCK_DGRAM, 0), c = socket(fam, SOCK_DGRAM, 0), one = 1, tos = 0x10;
    int rcv = 65536;
    struct sockaddr_storage a = {0};
    socklen_t len;
    if (v6) {
      struct sockaddr_in6* s6 = (struct sockaddr_in6*)&a;
      s6->sin6_family = AF_INET6;
      s6->sin6_addr = in6addr_loopback;
      len = sizeof *s6;
    } else {
      struct sockaddr_in* s4 = (struct sockaddr_in*)&a;
      s4->sin_family = AF_INET;
      s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *s4;
    }
    setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(b, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (!v6) setsockopt(b, IPPROTO_IP, IP_TOS, &tos, sizeof tos);
    if (bind(b, (struct sockaddr*)&a, len) != 0) return v6 ? 77 : 3;
    len = sizeof a;
    getsockname(b, (struct sockaddr*)&a, &len);
    if (connect(c, (struct sockaddr*)&a, len) != 0) return 4;
    if (at(b, 3) || at(c, 4)) return 5;
    *port = port_of(3);
    return 0;
  }
  CHECK(port_of(3) == *port, "bound to port %d, not %d", port_of(3), *port);
  CHECK(int_opt(3, SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR lost");
  CHECK(int_opt(3, SOL_SOCKET, SO_RCVBUF) == 131072, "SO_RCVBUF %d", int_opt(3, SOL_SOCKET, SO_RCVBUF));
  if (!v6) CHECK(int_opt(3, IPPROTO_IP, IP_TOS) == 0x10, "IP_TOS %x", int_opt(3, IPPROTO_IP, IP_TOS));
  struct sockaddr_storage peer;
  socklen_t len = sizeof peer;
  CHECK(getpeername(4, (struct sockaddr*)&peer, &len) == 0, "fd 4 is not connected");
  char buf[16] = {0};
  CHECK(send(4, "ping", 4, 0) == 4, "send: %s", strerror(errno));
  struct sockaddr_storage from;
  socklen_t flen = sizeof from;
  ssize_t n = recvfrom(3, buf, sizeof buf, 0, (struct sockaddr*)&from, &flen);
  CHECK(n == 4 && !memcmp(buf, "ping", 4), "fd 3 got %zd bytes", n);
  CHECK(port_of(4) > 0 && ntohs(((struct sockaddr_in*)&from)->sin_port) == port_of(4),
        "the datagram did not come from fd 4's port");
  return 0;
}

static int check_tcp_listen(int setup, int* port) {
  if (setup) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1, idle = 77;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(l, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    if (bind(l, (struct sockaddr*)&a, sizeof a) || listen(l, 7) || at(l, 3)) return 3;
    *port = port_of(3);
    return 0;
  }
  CHECK(port_of(3) == *port, "listening on port %d, not %d", port_of(3), *port);
  CHECK(int_opt(3, SOL_SOCKET, SO_ACCEPTCONN) == 1, "fd 3 is not listening");
  CHECK(int_opt(3, IPPROTO_TCP, TCP_KEEPIDLE) == 77, "TCP_KEEPIDLE %d", int_opt(3, IPPROTO_TCP, TCP_KEEPIDLE));
  struct tcp_info ti;
  socklen_t tl = sizeof ti;
  CHECK(getsockopt(3, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_sacked == 7,
        "backlog %u", ti.tcpi_sacked);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                          .sin_port = htons(*port)};
  CHECK(connect(c, (struct sockaddr*)&a, sizeof a) == 0, "connect: %s", strerror(errno));
  int s = accept(3, NULL, NULL);
  char buf[8] = {0};
  CHECK(s >= 0 && write(c, "hi", 2) == 2 && read(s, buf, 2) == 2 && !strcmp(buf, "hi"),
        "no connection through the listener");
  return 0;
}

static int pair_type(const char* mode) {
  return !strcmp(mode, "pair-stream") ? SOCK_STREAM
         : !strcmp(mode, "pair-dgram") ? SOCK_DGRAM
                                       : SOCK_SEQPACKET;
}

static int check_pair(int type, int setup) {
  if (setup) {
    int sv[2], p[2];
    if (socketpair(AF_UNIX, type, 0, sv) || pipe(p)) return 3;
    if (at(sv[0], 3) || at(sv[1], 4) || at(p[0], 5) || at(p[1], 6)) return 4;
    if (send_fd(4, "to-3", 5) || write(3, "to-4", 4) != 4 || write(4, "more", 4) != 4) return 5;
    if (shutdown(4, SHUT_WR)) return 6;
    return 0;
  }
  char buf[16] = {0};
  int got;
  ssize_t n = recv_fd(3, buf, type == SOCK_STREAM ? 4 : sizeof buf, &got);
  CHECK(n == 4 && !memcmp(buf, "to-3", 4), "first message to fd 3: %zd '%s'", n, buf);
  CHECK(got >= 0, "no descriptor came with it");
  if (got >= 0) {
    struct stat a, b;
    fstat(got, &a);
    fstat(5, &b);
    CHECK(a.st_ino == b.st_ino, "the descriptor passed is not fd 5's pipe");
    CHECK(write(6, "x", 1) == 1 && read(got, buf, 1) == 1 && buf[0] == 'x',
          "the passed pipe end does not read what fd 6 writes");
  }
  memset(buf, 0, sizeof buf);
  n = recv(3, buf, sizeof buf, MSG_DONTWAIT);
  CHECK(n == 4 && !memcmp(buf, "more", 4), "second message to fd 3: %zd '%s'", n, buf);
  n = recv(3, buf, sizeof buf, MSG_DONTWAIT);
  if (type == SOCK_DGRAM)
    CHECK(n < 0 && errno == EAGAIN, "fd 3 has more: %zd", n);
  else
    CHECK(n == 0, "fd 4 was shut for writing: fd 3 should read end-of-file, got %zd", n);
  memset(buf, 0, sizeof buf);
  n = recv(4, buf, sizeof buf, MSG_DONTWAIT);
  CHECK(n == 4 && !memcmp(buf, "to-4", 4), "message to fd 4: %zd '%s'", n, buf);
  CHECK(send(4, "no", 2, MSG_NOSIGNAL) < 0 && errno == EPIPE, "fd 4 can send after shutdown");
  CHECK(int_opt(3, SOL_SOCKET, SO_TYPE) == type, "type %d", int_opt(3, SOL_SOCKET, SO_TYPE));
  return 0;
}

static int check_named(const char* dir, int abstract, int setup) {
  struct sockaddr_un s, d;
  socklen_t sl = unix_addr(&s, dir, "s", abstract), dl = unix_addr(&d, dir, "d", abstract);
  if (setup) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0), r = socket(AF_UNIX, SOCK_DGRAM, 0);
    int c = socket(AF_UNIX, SOCK_DGRAM, 0), tmp = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (bind(l, (struct sockaddr*)&s, sl) || listen(l, 5) || bind(r, (struct sockaddr*)&d, dl))
      return 3;
    if (!abstract && chmod(s.sun_path, 0640)) return 3;
    if (connect(c, (struct sockaddr*)&d, dl)) return 4;
    if (sendto(tmp, "queued", 6, 0, (struct sockaddr*)&d, dl) != 6) return 5;
    close(tmp);
    if (at(l, 3) || at(r, 4) || at(c, 5)) return 6;
    return 0;
  }
  struct sockaddr_un got;
  socklen_t gl = sizeof got;
  CHECK(getsockname(3, (struct sockaddr*)&got, &gl) == 0 &&
            (abstract ? gl == sl && !memcmp(&got, &s, sl) : !strcmp(got.sun_path, s.sun_path)),
        "fd 3 has another name");
  if (!abstract) {
    struct stat st;
    CHECK(stat(s.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0640,
          "socket file %s: mode %o", s.sun_path, st.st_mode & 0777);
  }
  char buf[16] = {0};
  ssize_t n = recv(4, buf, sizeof buf, MSG_DONTWAIT);
  CHECK(n == 6 && !memcmp(buf, "queued", 6), "the queued datagram: %zd '%s'", n, buf);
  CHECK(send(5, "again", 5, 0) == 5 && recv(4, buf, sizeof buf, MSG_DONTWAIT) == 5,
        "fd 5 does not send to fd 4");
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&s, sl) == 0, "connect to the listener: %s", strerror(errno));
  int a = accept(3, NULL, NULL);
  CHECK(a >= 0 && write(c, "hi", 2) == 2 && read(a, buf, 2) == 2, "no connection accepted");
  if (!abstract) unlink(s.sun_path), unlink(d.sun_path);
  return 0;
}

static int check_dead_peer(int setup) {
  if (setup) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || at(sv[0], 3)) return 3;
    if (write(sv[1], "bye", 3) != 3) return 4;
    close(sv[1]);
    return 0;
  }
  char buf[8] = {0};
  CHECK(recv(3, buf, sizeof buf, MSG_DONTWAIT) == 3 && !memcmp(buf, "bye", 3), "lost 'bye'");
  CHECK(recv(3, buf, sizeof buf, MSG_DONTWAIT) == 0, "no end-of-file after it");
  CHECK(send(3, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "writing to a closed peer worked");
  return 0;
}

static int check_pty(int setup) {
  if (setup) {
    int m, s;
    struct winsize ws = {.ws_row = 33, .ws_col = 77};
    if (openpty(&m, &s, NULL, NULL, &ws)) return 3;
    struct termios t;
    tcgetattr(s, &t);
    cfmakeraw(&t);
    tcsetattr(s, TCSANOW, &t);
    if (at(m, 10) || at(s, 11) || at(10, 3) || at(11, 4)) return 4;
    return 0;
  }
  struct winsize ws;
  CHECK(ioctl(4, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 33 && ws.ws_col == 77, "window %dx%d",
        ws.ws_row, ws.ws_col);
  struct termios t;
  CHECK(tcgetattr(4, &t) == 0 && !(t.c_lflag & (ECHO | ICANON)), "not raw any more");
  char buf[8] = {0};
  CHECK(write(3, "in", 2) == 2 && read(4, buf, 2) == 2 && !memcmp(buf, "in", 2),
        "master to slave");
  CHECK(write(4, "out", 3) == 3 && read(3, buf, 3) == 3 && !memcmp(buf, "out", 3),
        "slave to master");
  unsigned n = 0;
  CHECK(ioctl(3, TIOCGPTN, &n) == 0, "fd 3 is not a pty master");
  return 0;
}

static int check_udp_node(int setup, int* port) {
  static struct sockaddr_in mine;
  if (setup) {
    struct ifaddrs *all, *i;
    if (getifaddrs(&all)) return 3;
    for (i = all; i; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
          ((struct sockaddr_in*)i->ifa_addr)->sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        break;
    if (!i) return 77;
    memcpy(&mine, i->ifa_addr, sizeof mine);
    freeifaddrs(all);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (bind(u, (struct sockaddr*)&mine, sizeof mine) || at(u, 3)) return 4;
    *port = port_of(3);
    return 0;
  }
  struct sockaddr_in now;
  socklen_t len = sizeof now;
  CHECK(getsockname(3, (struct sockaddr*)&now, &len) == 0 &&
            now.sin_addr.s_addr == mine.sin_addr.s_addr && ntohs(now.sin_port) == *port,
        "fd 3 is not bound where it was");
  return 0;
}

static int check_accepted(const char* dir, int setup) {
  struct sockaddr_un a;
  socklen_t al = unix_addr(&a, dir, "a", 0);
  if (setup) {
    int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(l, (struct sockaddr*)&a, al) || listen(l, 3) || connect(c, (struct sockaddr*)&a, al))
      return 3;
    int s = accept(l, NULL, NULL);
    if (s < 0 || at(l, 3) || at(c, 4) || at(s, 5)) return 4;
    if (write(4, "to-server", 9) != 9 || write(5, "to-client", 9) != 9) return 5;
    return 0;
  }
  struct sockaddr_un got;
  socklen_t gl = sizeof got;
  CHECK(getsockname(5, (struct sockaddr*)&got, &gl) == 0 && !strcmp(got.sun_path, a.sun_path),
        "the accepted socket is not named %s", a.sun_path);
  gl = sizeof got;
  CHECK(getpeername(4, (struct sockaddr*)&got, &gl) == 0 && !strcmp(got.sun_path, a.sun_path),
        "the client's peer is not %s", a.sun_path);
  char buf[16] = {0};
  CHECK(recv(5, buf, sizeof buf, MSG_DONTWAIT) == 9 && !memcmp(buf, "to-server", 9),
        "the server's queue: '%s'", buf);
  CHECK(recv(4, buf, sizeof buf, MSG_DONTWAIT) == 9 && !memcmp(buf, "to-client", 9),
        "the client's queue: '%s'", buf);
  CHECK(write(4, "x", 1) == 1 && read(5, buf, 1) == 1 && buf[0] == 'x', "client to server");
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&a, al) == 0 && accept(3, NULL, NULL) >= 0,
        "the listener does not accept any more");
  unlink(a.sun_path);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  const char* dir = argc > 2 ? argv[2] : "/tmp";
  int port = 0, rc;
  target_install_go();
  for (int setup = 1; setup >= 0; setup--) {
    if (!strcmp(mode, "udp") || !strcmp(mode, "udp6"))
      rc = check_udp(!strcmp(mode, "udp6"), setup, &port);
    else if (!strcmp(mode, "tcp-listen"))
      rc = check_tcp_listen(setup, &port);
    else if (!strncmp(mode, "pair-", 5))
      rc = check_pair(pair_type(mode), setup);
    else if (!strcmp(mode, "unix-path") || !strcmp(mode, "unix-abstract"))
      rc = check_named(dir, !strcmp(mode, "unix-abstract"), setup);
    else if (!strcmp(mode, "dead-peer"))
      rc = check_dead_peer(setup);
    else if (!strcmp(mode, "pty"))
      rc = check_pty(setup);
    else if (!strcmp(mode, "unix-accepted"))
      rc = check_accepted(dir, setup);
    else if (!strcmp(mode, "udp-node"))
      rc = check_udp_node(setup, &port);
    else
      return 2;
    if (setup) {
      if (rc) return rc;
      target_ready();
      target_wait_go();
    }
  }
  return target_finish();
}
