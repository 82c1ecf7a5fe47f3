// Which sockets ferry takes, and the parts all kinds share: borrowing the process's socket to ask
// it about itself, addresses as text, and the dispatch from the fd table.
#include "cr/resources/files/sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

int domain_of(int fd) {
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0) return -1;
  return v;
}

std::string family_text(int fd) {
  int domain = domain_of(fd), type = 0;
  socklen_t len = sizeof type;
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  std::string fam = domain == AF_NETLINK  ? "netlink"
                    : domain == AF_PACKET ? "packet"
                                          : fmt::format("family {}", domain);
  std::string kind = type == SOCK_RAW ? "raw" : type == SOCK_DGRAM ? "datagram" : "other";
  return fmt::format("{} {} socket", fam, kind);
}

}  // namespace

uint64_t socket_ino(const std::string& link) {
  if (link.rfind("socket:[", 0) != 0) return 0;
  return proc::parse_u64(link.substr(8, link.size() - 9));
}

ProcessSockets scan_sockets(pid_t pid) {
  ProcessSockets ps;
  for (auto& n : proc::list_dir(proc::path(pid, "fd"))) {
    int num = static_cast<int>(proc::parse_u64(n));
    auto link = proc::try_read_link(proc::path(pid, fmt::format("fd/{}", num)));
    if (link && socket_ino(*link)) ps.by_ino[socket_ino(*link)].push_back(num);
  }
  return ps;
}

UniqueFd borrow_fd(pid_t pid, int num) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) fail_errno(errno, "pidfd_open({})", pid);
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), num, 0)));
  if (!fd) fail_errno(errno, "cannot reach fd {} of process {}", num, pid);
  return fd;
}

std::string address_text(const std::string& b) {
  if (b.size() < sizeof(sa_family_t)) return "(none)";
  sa_family_t family;
  std::memcpy(&family, b.data(), sizeof family);
  char text[INET6_ADDRSTRLEN] = {};
  if (family == AF_INET && b.size() >= sizeof(sockaddr_in)) {
    sockaddr_in a;
    std::memcpy(&a, b.data(), sizeof a);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    return fmt::format("{}:{}", text, ntohs(a.sin_port));
  }
  if (family == AF_INET6 && b.size() >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, b.data(), sizeof a);
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
    return fmt::format("[{}]:{}", text, ntohs(a.sin6_port));
  }
  if (family == AF_UNIX) {
    std::string path = b.substr(sizeof family);
    if (path.empty()) return "(unnamed)";
    if (path[0] == '\0') return "@" + std::string(path.data() + 1, path.size() - 1);
    return std::string(path.c_str());
  }
  return fmt::format("(family {})", family);
}

std::string socket_name(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  return std::string(reinterpret_cast<char*>(&a), len);
}

std::string peer_name(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
  return std::string(reinterpret_cast<char*>(&a), len);
}

std::vector<std::string> bound_addresses(pid_t pid) {
  std::vector<std::string> out;
  for (auto& [ino, nums] : scan_sockets(pid).by_ino) {
    UniqueFd fd = borrow_fd(pid, nums.front());
    std::string name = socket_name(fd.get());
    if (name.size() < sizeof(sa_family_t)) continue;
    sa_family_t family;
    std::memcpy(&family, name.data(), sizeof family);
    bool wanted = false;
    if (family == AF_INET && name.size() >= sizeof(sockaddr_in)) {
      sockaddr_in a;
      std::memcpy(&a, name.data(), sizeof a);
      wanted = a.sin_addr.s_addr != htonl(INADDR_ANY);
    } else if (family == AF_INET6 && name.size() >= sizeof(sockaddr_in6)) {
      sockaddr_in6 a;
      std::memcpy(&a, name.data(), sizeof a);
      wanted = !IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr);
    } else if (family == AF_UNIX) {
      wanted = name.size() > sizeof family && name[sizeof family] != '\0';  // a path
    }
    if (wanted) out.push_back(name);
  }
  return out;
}

std::string address_unavailable_here(const std::string& b) {
  if (b.size() < sizeof(sa_family_t)) return "a malformed socket address";
  sa_family_t family;
  std::memcpy(&family, b.data(), sizeof family);
  if (family == AF_UNIX) {
    std::string path = address_text(b);
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0)
      return fmt::format("its socket path {} is taken here", path);
    std::string dir = path.substr(0, path.rfind('/') + 1);
    if (dir.empty() || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return fmt::format("the directory of its socket path {} does not exist here", path);
    return "";
  }
  if (family != AF_INET && family != AF_INET6) return "a socket address of an unknown family";
  // Bound with port 0: whether the address is this node's, whatever port the task holds.
  std::string probe = b;
  if (family == AF_INET) {
    sockaddr_in a;
    std::memcpy(&a, b.data(), sizeof a);
    a.sin_port = 0;
    probe.assign(reinterpret_cast<char*>(&a), sizeof a);
  } else {
    sockaddr_in6 a;
    std::memcpy(&a, b.data(), sizeof a);
    a.sin6_port = 0;
    probe.assign(reinterpret_cast<char*>(&a), sizeof a);
  }
  UniqueFd fd(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(probe.data()),
                    static_cast<socklen_t>(probe.size())) != 0)
    return fmt::format("it has a socket bound to {}, an address this node does not have",
                       address_text(b));
  return "";
}

std::string unsupported_socket(pid_t pid, int num) {
  UniqueFd fd = borrow_fd(pid, num);
  switch (domain_of(fd.get())) {
    case AF_INET:
    case AF_INET6:
      return unsupported_inet_socket(pid, num, fd.get());
    case AF_UNIX:
      return unsupported_unix_socket(pid, num, fd.get(), scan_sockets(pid));
    default:
      return fmt::format("fd {} is a {}; sockets of that family are not supported", num,
                         family_text(fd.get()));
  }
}

void dump_socket(DumpContext& ctx, FdProbe& p, image::OpenFile* f) {
  if (std::string why = unsupported_socket(ctx.pid(), p.num); !why.empty())
    fail("cannot checkpoint process {}: {}", ctx.pid(), why);
  image::Socket* s = f->mutable_socket();
  if (domain_of(p.local.get()) == AF_UNIX)
    dump_unix_socket(p.local.get(), s);
  else
    dump_inet_socket(ctx.pid(), p.local.get(), s);
  s->set_ino(p.st.st_ino);
}

void dump_socket_queues(DumpContext& ctx, const std::vector<FdProbe*>& probes,
                        const std::vector<image::OpenFile*>& files, const image::FileTable& ft) {
  std::map<int, uint64_t> file_of_fd;
  for (auto& fd : ft.fds()) file_of_fd[fd.num()] = fd.file_id();
  for (size_t i = 0; i < probes.size(); i++)
    if (files[i]->kind_case() == image::OpenFile::kSocket && files[i]->socket().family() == AF_UNIX)
      dump_unix_queue(ctx.pid(), probes[i]->local.get(), files[i]->mutable_socket(), file_of_fd);
}

UniqueFd open_socket(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  UniqueFd fd =
      f.socket().family() == AF_UNIX ? open_unix_socket(r, f, s) : open_inet_socket(f.socket());
  if (::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE) != 0)
    fail_errno(errno, "cannot restore the status flags of a socket");
  return fd;
}

}  // namespace ferry::cr
