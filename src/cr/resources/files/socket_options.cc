// Socket options: each one the kernel lets read back, compared with a fresh socket of the same
// family, type and protocol; only those that differ are recorded and set again (setting one
// that was never set can change behaviour: a fixed buffer size turns autotuning off).
// Multicast memberships cannot be read back at all (docs/supported.md).
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <cstring>

#include "cr/resources/files/sockets.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

struct Option {
  int level, name;
  const char* text;
  bool inet_only, tcp_only, v6_only;
};

// SO_RCVBUF/SO_SNDBUF are handled apart (the kernel doubles what it is given).
const Option kOptions[] = {
    {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", false, false, false},
    {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", false, false, false},
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", false, false, false},
    {SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", false, false, false},
    {SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", false, false, false},
    {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", false, false, false},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", false, false, false},
    {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", false, false, false},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", false, false, false},
    {SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", false, false, false},
    {SOL_SOCKET, SO_TIMESTAMPNS, "SO_TIMESTAMPNS", false, false, false},
    {SOL_SOCKET, SO_MARK, "SO_MARK", false, false, false},
    {SOL_SOCKET, SO_LINGER, "SO_LINGER", false, false, false},
    {SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO", false, false, false},
    {SOL_SOCKET, SO_SNDTIMEO, "SO_SNDTIMEO", false, false, false},
    {SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", false, false, false},
    {SOL_SOCKET, SO_BINDTODEVICE, "SO_BINDTODEVICE", true, false, false},
    {IPPROTO_IP, IP_TOS, "IP_TOS", true, false, false},
    {IPPROTO_IP, IP_TTL, "IP_TTL", true, false, false},
    {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", true, false, false},
    {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", true, false, false},
    {IPPROTO_IP, IP_MULTICAST_ALL, "IP_MULTICAST_ALL", true, false, false},
    {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", true, false, false},
    {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", true, false, false},
    {IPPROTO_IP, IP_RECVTTL, "IP_RECVTTL", true, false, false},
    {IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", true, false, false},
    {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", true, false, false},
    {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT", true, false, false},
    {IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", true, false, false},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", true, false, false},
    {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", true, false, true},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", true, false, true},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", true, false, true},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", true, false, true},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", true, false, true},
    {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", true, false, true},
    {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", true, false, true},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", true, true, false},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", true, true, false},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", true, true, false},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", true, true, false},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", true, true, false},
    {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", true, true, false},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", true, true, false},
    {IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG", true, true, false},
    {IPPROTO_TCP, TCP_CONGESTION, "TCP_CONGESTION", true, true, false},
};

bool applies(const Option& o, int family, int type) {
  bool inet = family == AF_INET || family == AF_INET6;
  if (o.inet_only && !inet) return false;
  if (o.tcp_only && type != SOCK_STREAM) return false;
  if (o.v6_only && family != AF_INET6) return false;
  return true;
}

bool read_option(int fd, int level, int name, std::string* value) {
  char buf[64] = {};
  socklen_t len = sizeof buf;
  if (::getsockopt(fd, level, name, buf, &len) != 0) return false;
  value->assign(buf, len);
  return true;
}

const char* option_text(int level, int name) {
  for (auto& o : kOptions)
    if (o.level == level && o.name == name) return o.text;
  return level == SOL_SOCKET && name == SO_RCVBUF ? "SO_RCVBUF" : "SO_SNDBUF";
}

}  // namespace

void dump_socket_options(int fd, int family, int type, int protocol,
                         google::protobuf::RepeatedPtrField<image::SocketOption>* out) {
  UniqueFd fresh(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!fresh) fail_errno(errno, "cannot make a socket to compare options with");
  auto record = [&](int level, int name) {
    std::string mine, theirs;
    if (!read_option(fd, level, name, &mine)) return;
    if (read_option(fresh.get(), level, name, &theirs) && mine == theirs) return;
    image::SocketOption* o = out->Add();
    o->set_level(level);
    o->set_name(name);
    o->set_value(mine);
  };
  for (auto& o : kOptions)
    if (applies(o, family, type)) record(o.level, o.name);
  record(SOL_SOCKET, SO_RCVBUF);
  record(SOL_SOCKET, SO_SNDBUF);
}

void restore_socket_options(
    int fd, const google::protobuf::RepeatedPtrField<image::SocketOption>& options) {
  for (auto& o : options) {
    int name = o.name();
    std::string value = o.value();
    // Given half of what getsockopt() shows, as root (the *FORCE variants pass rmem_max/wmem_max,
    // which the process may have been allowed past when it set them).
    if (o.level() == SOL_SOCKET && (name == SO_RCVBUF || name == SO_SNDBUF)) {
      int v = 0;
      std::memcpy(&v, value.data(), std::min(value.size(), sizeof v));
      v /= 2;
      value.assign(reinterpret_cast<char*>(&v), sizeof v);
      name = name == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
    }
    // SO_BINDTODEVICE reads back as the name with its NUL; set it without.
    if (o.level() == SOL_SOCKET && name == SO_BINDTODEVICE) value = std::string(value.c_str());
    if (::setsockopt(fd, o.level(), name, value.data(), static_cast<socklen_t>(value.size())) != 0)
      fail_errno(errno, "cannot set socket option {} again", option_text(o.level(), o.name()));
  }
}

}  // namespace ferry::cr
