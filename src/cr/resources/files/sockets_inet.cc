// IPv4 and IPv6 sockets with no state beyond this host: UDP (bound and/or connected) and TCP
// sockets that are only bound or listening. An established TCP connection has a peer that
// would notice (a later issue, with repair mode); connections waiting on a listener have one
// too, and are refused naming them. Queued datagrams cannot be given back with their senders'
// addresses, so a UDP socket holding some is refused (the process can be checkpointed once it
// read them).
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "cr/resources/files/sockets.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

int int_option(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, level, name, &v, &len) != 0) fail_errno(errno, "getsockopt");
  return v;
}

std::string kind_text(int family, int type) {
  return fmt::format("{} {} socket", family == AF_INET6 ? "IPv6" : "IPv4",
                     type == SOCK_STREAM ? "TCP" : "UDP");
}

bool has_port(const std::string& name) {
  if (name.size() >= sizeof(sockaddr_in) && name.size() < sizeof(sockaddr_in6)) {
    sockaddr_in a;
    std::memcpy(&a, name.data(), sizeof a);
    return a.sin_port != 0 || a.sin_addr.s_addr != 0;
  }
  if (name.size() >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, name.data(), sizeof a);
    static const in6_addr any = IN6ADDR_ANY_INIT;
    return a.sin6_port != 0 || std::memcmp(&a.sin6_addr, &any, sizeof any) != 0;
  }
  return false;
}

}  // namespace

std::string unsupported_inet_socket(pid_t, int num, int fd) {
  int family = int_option(fd, SOL_SOCKET, SO_DOMAIN);
  int type = int_option(fd, SOL_SOCKET, SO_TYPE);
  int protocol = int_option(fd, SOL_SOCKET, SO_PROTOCOL);
  std::string what = kind_text(family, type);
  if (type == SOCK_DGRAM && protocol == IPPROTO_UDP) {
    char byte;
    if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) >= 0)
      return fmt::format(
          "fd {} is a {} ({}) holding datagrams not yet read; ferry cannot give "
          "them back with their senders' addresses",
          num, what, address_text(socket_name(fd)));
    int unsent = 0;
    if (::ioctl(fd, SIOCOUTQ, &unsent) == 0 && unsent > 0)
      return fmt::format("fd {} is a {} with {} bytes corked, not yet sent", num, what, unsent);
    return "";
  }
  if (type == SOCK_STREAM && protocol == IPPROTO_TCP) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
      return fmt::format("fd {} is a {} whose state cannot be read", num, what);
    if (info.tcpi_state == TCP_LISTEN) {
      // For a listener the kernel reports its queue in these two fields.
      if (info.tcpi_unacked > 0)
        return fmt::format(
            "fd {} is a listening {} on {} with {} connection(s) waiting to be "
            "accepted; those have a peer ferry cannot move",
            num, what, address_text(socket_name(fd)), info.tcpi_unacked);
      return "";
    }
    if (info.tcpi_state == TCP_CLOSE) return "";
    return fmt::format(
        "fd {} is a connected {} ({} -> {}); established TCP connections are not "
        "supported yet",
        num, what, address_text(socket_name(fd)), address_text(peer_name(fd)));
  }
  return fmt::format("fd {} is a {} socket of protocol {}, which ferry cannot capture", num,
                     family == AF_INET6 ? "IPv6" : "IPv4", protocol);
}

void dump_inet_socket(pid_t pid, int fd, image::Socket* s) {
  s->set_family(int_option(fd, SOL_SOCKET, SO_DOMAIN));
  s->set_type(int_option(fd, SOL_SOCKET, SO_TYPE));
  s->set_protocol(int_option(fd, SOL_SOCKET, SO_PROTOCOL));
  std::string name = socket_name(fd);
  if (has_port(name)) s->set_name(name);
  s->set_peer_name(peer_name(fd));
  if (s->type() == SOCK_STREAM) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
      fail_errno(errno, "cannot read the state of a TCP socket of process {}", pid);
    if (info.tcpi_state == TCP_LISTEN) {
      s->set_listening(true);
      s->set_backlog(info.tcpi_sacked);
      s->clear_peer_name();
    }
  }
  dump_socket_options(fd, s->family(), s->type(), s->protocol(), s->mutable_options());
}

UniqueFd open_inet_socket(const image::Socket& s) {
  UniqueFd fd(::socket(s.family(), s.type() | SOCK_CLOEXEC, s.protocol()));
  if (!fd) fail_errno(errno, "cannot make an {}", kind_text(s.family(), s.type()));
  restore_socket_options(fd.get(), s.options());
  std::string what = kind_text(s.family(), s.type());
  if (!s.name().empty() && ::bind(fd.get(), reinterpret_cast<const sockaddr*>(s.name().data()),
                                  static_cast<socklen_t>(s.name().size())) != 0)
    fail_errno(errno, "cannot bind an {} to {} again", what, address_text(s.name()));
  if (s.listening() && ::listen(fd.get(), static_cast<int>(s.backlog())) != 0)
    fail_errno(errno, "cannot listen on {} again", address_text(s.name()));
  if (!s.peer_name().empty() &&
      ::connect(fd.get(), reinterpret_cast<const sockaddr*>(s.peer_name().data()),
                static_cast<socklen_t>(s.peer_name().size())) != 0)
    fail_errno(errno, "cannot connect an {} to {} again", what, address_text(s.peer_name()));
  return fd;
}

}  // namespace ferry::cr
