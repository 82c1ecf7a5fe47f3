// Unix sockets whose peers are all the process's own: socketpairs (also one whose other end was
// closed), sockets bound to a path or an abstract name (listening with nobody waiting, or
// receiving datagrams), datagram sockets connected to one of those. What sits in their receive
// queues comes back in order, with the descriptors passed along (SCM_RIGHTS) when the process
// holds those descriptions itself. A peer outside the process would notice the move: refused.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "cr/resources/files/file_kinds.h"
#include "cr/resources/files/sockets.h"
#include "cr/resources/files/unix_diag.h"
#include "cr/image_paths.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/stat_time.h"

namespace ferry::cr {
namespace {

constexpr uint8_t kEstablished = 1, kListen = 10;

std::string type_text(int type) {
  return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "datagram" : "seqpacket";
}

UnixSocketInfo info_of(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail_errno(errno, "fstat on a socket");
  auto info = unix_socket_info(st.st_ino);
  if (!info) fail("the kernel does not know Unix socket {} any more", st.st_ino);
  return *info;
}

// The kernel's dev_t (major << 20 | minor) as stat() shows it.
uint64_t user_dev(uint64_t kernel_dev) {
  return makedev(static_cast<unsigned>(kernel_dev >> 20),
                 static_cast<unsigned>(kernel_dev & 0xfffff));
}

std::string unix_address(const std::string& name) {  // sun_path bytes -> sockaddr bytes
  sa_family_t family = AF_UNIX;
  return std::string(reinterpret_cast<const char*>(&family), sizeof family) + name;
}

std::string path_of(const std::string& name) {  // sun_path bytes -> a path ("" if abstract)
  if (name.empty() || name[0] == '\0') return "";
  return std::string(name.c_str());
}

int int_option(int fd, int level, int name) {
  int v = 0;
  socklen_t len = sizeof v;
  ::getsockopt(fd, level, name, &v, &len);
  return v;
}

bool has_queue(int fd) {
  char byte;
  return ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

// Whether one of the process's sockets listens on `name` (sun_path bytes).
bool listens_on(const ProcessSockets& ps, const std::string& name) {
  if (name.empty()) return false;
  for (auto& [ino, nums] : ps.by_ino) {
    auto info = unix_socket_info(ino);
    if (info && info->state == kListen && info->name == name) return true;
  }
  return false;
}

// The listening socket of the image named `name` (sockaddr bytes), if any.
const image::Socket* listener_named(const image::Image& img, const std::string& name) {
  if (name.size() <= sizeof(sa_family_t)) return nullptr;
  for (auto& f : img.files().files())
    if (f.kind_case() == image::OpenFile::kSocket && f.socket().family() == AF_UNIX &&
        f.socket().listening() && f.socket().name() == name)
      return &f.socket();
  return nullptr;
}

}  // namespace

std::string unsupported_unix_socket(pid_t, int num, int fd, const ProcessSockets& ps) {
  UnixSocketInfo u = info_of(fd);
  std::string what = fmt::format("fd {} is a Unix {} socket", num, type_text(u.type));
  if (!u.name.empty()) what += " named " + address_text(unix_address(u.name));
  if (u.peer && !ps.has(u.peer))
    return what + " connected to a socket outside the process; that peer would notice the move";
  // Connected, and the peer has no inode: either it closed (then this end is shut both ways)
  // or it waits in some listener's queue, not yet accepted, outside the process or in it.
  if (u.type != SOCK_DGRAM && u.state == kEstablished && !u.peer && u.shutdown != 3)
    return what +
           " connected to a socket outside the process (not yet accepted by its "
           "listener); that peer would notice the move";
  if (u.state == kListen && u.waiting > 0)
    return fmt::format(
        "{} with {} connection(s) waiting to be accepted; their peers would notice "
        "the move",
        what, u.waiting);
  if (u.peer && u.type != SOCK_DGRAM) {
    // A connection inside the process made through a listener's name is made again the same
    // way, through that listener: it must still be open in the process.
    auto other = unix_socket_info(u.peer);
    bool named = !u.name.empty() || (other && !other->name.empty());
    if (named && !listens_on(ps, u.name) && !(other && listens_on(ps, other->name)))
      return what +
             " accepted from a listener the process no longer holds; ferry cannot make "
             "that connection again";
  }
  std::string path = path_of(u.name);
  if (!path.empty()) {
    struct stat st;
    if (!u.has_file || ::lstat(path.c_str(), &st) != 0 || st.st_ino != u.file_ino ||
        st.st_dev != user_dev(u.file_dev))
      return what + ", and its socket file was removed or replaced since it was bound";
  }
  if (u.state != kListen && has_queue(fd)) {
    for (int opt : {SO_PASSCRED, SO_PASSSEC})
      if (int_option(fd, SOL_SOCKET, opt))
        return what +
               " holding messages whose senders' credentials it asked for (SO_PASSCRED or "
               "SO_PASSSEC); ferry cannot send them again as those senders";
    if (u.type == SOCK_DGRAM && !u.peer && u.name.empty())
      return what + " holding messages while neither bound nor connected";
  }
  return "";
}

void dump_unix_socket(int fd, image::Socket* s) {
  UnixSocketInfo u = info_of(fd);
  s->set_family(AF_UNIX);
  s->set_type(u.type);
  s->set_ino(u.ino);
  std::string name = socket_name(fd);
  if (name.size() > sizeof(sa_family_t)) s->set_name(name);
  s->set_peer_ino(u.peer);
  s->set_peer_gone(u.type != SOCK_DGRAM && u.state == kEstablished && u.peer == 0 &&
                   u.shutdown == 3);
  s->set_listening(u.state == kListen);
  if (s->listening()) {
    // The socket itself does not tell; unix_diag shows it as a listener's "write queue".
    s->set_backlog(u.backlog);
  }
  s->set_shutdown(u.shutdown);
  std::string path = path_of(u.name);
  if (!path.empty()) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) fail_errno(errno, "cannot stat socket file {}", path);
    *s->mutable_bound_file() = identity_of(st);
  }
  dump_socket_options(fd, AF_UNIX, u.type, 0, s->mutable_options());
}

// What the socket's reads would return next, message by message, without taking it: peeked at
// a moving offset (SO_PEEK_OFF), which is put back as it was.
void dump_unix_queue(pid_t pid, int fd, image::Socket* s,
                     const std::map<int, uint64_t>& file_of_fd) {
  if (s->listening()) return;
  int saved = int_option(fd, SOL_SOCKET, SO_PEEK_OFF);
  int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) != 0)
    fail_errno(errno, "cannot peek into a Unix socket of process {}", pid);
  struct Restore {
    int fd, saved;
    ~Restore() { ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof saved); }
  } restore{fd, saved};
  std::vector<char> buf(1 << 20);
  constexpr size_t kMaxFds = 253;  // SCM_MAX_FD
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  for (int count = 0;; count++) {
    if (count > 100000) fail("a Unix socket of process {} holds too many messages", pid);
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) fail_errno(errno, "cannot peek into a Unix socket of process {}", pid);
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
      fail("a Unix socket of process {} holds a message too large to copy", pid);
    std::vector<UniqueFd> passed;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
          int got;
          std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
          passed.emplace_back(got);
        }
      }
    // The end of a closed peer's stream.
    if (n == 0 && passed.empty() &&
        (s->type() == SOCK_STREAM || s->peer_gone() || (s->shutdown() & 1)))
      break;
    // An empty datagram does not move the peek offset: what follows it cannot be reached.
    if (n == 0 && passed.empty())
      fail("cannot checkpoint process {}: a Unix socket holds an empty datagram", pid);
    image::SocketMessage* m = s->add_queue();
    m->set_data(buf.data(), static_cast<size_t>(n));
    for (auto& p : passed) {
      uint64_t file = 0;
      for (auto& [num, id] : file_of_fd)
        if (::syscall(SYS_kcmp, ::getpid(), pid, KCMP_FILE, p.get(), num) == 0) {
          file = id;
          break;
        }
      if (!file)
        fail(
            "cannot checkpoint process {}: a Unix socket holds a descriptor in flight that the "
            "process does not hold itself",
            pid);
      m->add_files(file);
    }
  }
}

// A socket of its own: bound (the socket file made again as the process, with its mode and
// owner; a stale one of the process's checkpointed self removed) and listening as it was.
UniqueFd make_unix_socket(Restorer& r, const image::Socket& s) {
  UniqueFd fd(::socket(AF_UNIX, s.type() | SOCK_CLOEXEC, 0));
  if (!fd) fail_errno(errno, "cannot make a Unix socket");
  restore_socket_options(fd.get(), s.options());
  if (!s.name().empty()) {
    std::string path = path_of(s.name().substr(sizeof(sa_family_t)));
    if (!path.empty()) {
      // A socket file left by the process's checkpointed self (same inode, this boot) is stale:
      // it goes. Anything else at that path is someone's, and the restore fails.
      struct stat old;
      if (::lstat(path.c_str(), &old) == 0) {
        const image::FileIdentity& id = s.bound_file();
        // (The modification time too: a file made since may have got the freed inode number.)
        if (!S_ISSOCK(old.st_mode) || old.st_ino != id.ino() || old.st_dev != id.dev() ||
            mtime_ns(old) != id.mtime_ns() || !taken_this_boot(r.image()))
          fail("cannot bind a Unix socket to {} again: the path is taken", path);
        ::unlink(path.c_str());
      }
    }
    int rc;
    {
      // As the process: its rights decide where a socket file may be made.
      ActingAs as(r.image().creds());
      rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(s.name().data()),
                  static_cast<socklen_t>(s.name().size()));
    }
    if (rc != 0) fail_errno(errno, "cannot bind a Unix socket to {} again", address_text(s.name()));
    if (!path.empty()) {
      const image::FileIdentity& id = s.bound_file();
      if (::lchown(path.c_str(), id.uid(), id.gid()) != 0 ||
          ::chmod(path.c_str(), id.mode() & 0777) != 0)
        fail_errno(errno, "cannot give socket file {} its owner and mode", path);
    }
  }
  if (s.listening() && ::listen(fd.get(), static_cast<int>(s.backlog())) != 0)
    fail_errno(errno, "cannot listen on {} again", address_text(s.name()));
  return fd;
}

// The listener `l` of the image, made now if its own turn has not come yet.
int listener_fd(Restorer& r, const image::Socket& l, FileRestoreState& st) {
  auto made = st.listeners.find(l.ino());
  if (made != st.listeners.end()) return made->second;
  auto it = st.made_early.emplace(l.ino(), make_unix_socket(r, l)).first;
  return st.listeners[l.ino()] = it->second.get();
}

// A connection between two sockets of the process: a socketpair, or, where it was made through
// a listener's name, through that listener again (so that the accepted end has the listener's
// name and the other end it as its peer). Returns the end of `s`; the other waits for its turn.
UniqueFd connect_pair(Restorer& r, const image::Socket& s, const image::Socket& peer,
                      FileRestoreState& st) {
  const image::Socket* l = listener_named(r.image(), s.name());
  bool s_accepted = l != nullptr;
  if (!l) l = listener_named(r.image(), peer.name());
  UniqueFd mine, other;
  if (!l) {
    int sv[2];
    if (::socketpair(AF_UNIX, s.type() | SOCK_CLOEXEC, 0, sv) != 0) fail_errno(errno, "socketpair");
    mine.reset(sv[0]);
    other.reset(sv[1]);
  } else {
    const image::Socket& client = s_accepted ? peer : s;
    UniqueFd c = make_unix_socket(r, client);
    int listener = listener_fd(r, *l, st);
    if (::connect(c.get(), reinterpret_cast<const sockaddr*>(l->name().data()),
                  static_cast<socklen_t>(l->name().size())) != 0)
      fail_errno(errno, "cannot connect to {} again", address_text(l->name()));
    UniqueFd a(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
    if (!a) fail_errno(errno, "cannot accept on {} again", address_text(l->name()));
    mine = s_accepted ? std::move(a) : std::move(c);
    other = s_accepted ? std::move(c) : std::move(a);
  }
  restore_socket_options(mine.get(), s.options());
  st.pair_ends[peer.ino()] = std::move(other);
  return mine;
}

// A Unix socket: an end of a connection inside the process (its other end kept for the peer's
// turn), one whose peer closed (a pair whose other end goes once the queue is back), or a socket
// of its own.
UniqueFd open_unix_socket(Restorer& r, const image::OpenFile& f, FileRestoreState& st) {
  const image::Socket& s = f.socket();
  for (auto* ready : {&st.pair_ends, &st.made_early}) {
    auto it = ready->find(s.ino());
    if (it == ready->end()) continue;
    UniqueFd fd = std::move(it->second);
    ready->erase(it);
    if (ready == &st.pair_ends) restore_socket_options(fd.get(), s.options());
    return fd;
  }
  if (s.peer_ino())
    for (auto& g : r.image().files().files())
      if (g.kind_case() == image::OpenFile::kSocket && g.socket().ino() == s.peer_ino() &&
          g.socket().peer_ino() == s.ino())
        return connect_pair(r, s, g.socket(), st);
  if (s.peer_gone()) {
    int sv[2];
    if (::socketpair(AF_UNIX, s.type() | SOCK_CLOEXEC, 0, sv) != 0) fail_errno(errno, "socketpair");
    st.dead_peer_ends[s.ino()] = UniqueFd(sv[1]);
    UniqueFd mine(sv[0]);
    restore_socket_options(mine.get(), s.options());
    return mine;
  }
  UniqueFd fd = make_unix_socket(r, s);
  if (s.listening()) st.listeners[s.ino()] = fd.get();  // for connections made through it
  return fd;
}

// Once every socket exists: datagram sockets connect to the process's named ones, queues are
// refilled from the other end (or through a fresh socket, for a named datagram socket), then
// shutdowns are applied and the ends of closed peers closed.
void finish_unix_sockets(Restorer& r, const image::FileTable& ft,
                         const std::map<uint64_t, UniqueFd>& local, FileRestoreState& st) {
  std::map<uint64_t, const image::OpenFile*> by_ino;
  for (auto& f : ft.files())
    if (f.kind_case() == image::OpenFile::kSocket && f.socket().family() == AF_UNIX &&
        local.count(f.id()))
      by_ino[f.socket().ino()] = &f;
  auto fd_of = [&](uint64_t ino) { return local.at(by_ino.at(ino)->id()).get(); };
  for (auto& [ino, f] : by_ino) {
    const image::Socket& s = f->socket();
    if (s.type() == SOCK_DGRAM && s.peer_ino() && by_ino.count(s.peer_ino()) &&
        by_ino.at(s.peer_ino())->socket().peer_ino() != ino) {
      const std::string& to = by_ino.at(s.peer_ino())->socket().name();
      if (::connect(fd_of(ino), reinterpret_cast<const sockaddr*>(to.data()),
                    static_cast<socklen_t>(to.size())) != 0)
        fail_errno(errno, "cannot connect a Unix datagram socket to {} again", address_text(to));
    }
  }
  for (auto& [ino, f] : by_ino) {
    const image::Socket& s = f->socket();
    if (s.queue().empty()) continue;
    UniqueFd temporary;
    int sender = -1;
    const sockaddr* to = nullptr;
    socklen_t to_len = 0;
    if (st.dead_peer_ends.count(ino)) {
      sender = st.dead_peer_ends.at(ino).get();
    } else if (s.peer_ino() && by_ino.count(s.peer_ino()) &&
               by_ino.at(s.peer_ino())->socket().peer_ino() == ino) {
      sender = fd_of(s.peer_ino());
    } else if (!s.name().empty()) {
      temporary.reset(::socket(AF_UNIX, s.type() | SOCK_CLOEXEC, 0));
      sender = temporary.get();
      to = reinterpret_cast<const sockaddr*>(s.name().data());
      to_len = static_cast<socklen_t>(s.name().size());
    } else {
      fail("internal: no way to refill a Unix socket's queue");
    }
    for (auto& m : s.queue()) {
      iovec iov{const_cast<char*>(m.data().data()), m.data().size()};
      msghdr msg{};
      msg.msg_name = const_cast<sockaddr*>(to);
      msg.msg_namelen = to_len;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      std::vector<char> control;
      if (!m.files().empty()) {
        control.resize(CMSG_SPACE(sizeof(int) * static_cast<size_t>(m.files_size())));
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(m.files_size()));
        for (int i = 0; i < m.files_size(); i++) {
          int passed = local.at(m.files(i)).get();
          std::memcpy(CMSG_DATA(c) + static_cast<size_t>(i) * sizeof(int), &passed, sizeof(int));
        }
      }
      if (::sendmsg(sender, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) !=
          static_cast<ssize_t>(m.data().size()))
        fail_errno(errno, "cannot put {} queued bytes back into a Unix socket", m.data().size());
    }
  }
  for (auto& [ino, f] : by_ino) {
    uint32_t bits = f->socket().shutdown() & 3;
    if (bits && !st.dead_peer_ends.count(ino))
      ::shutdown(fd_of(ino), bits == 3 ? SHUT_RDWR : bits == 1 ? SHUT_RD : SHUT_WR);
  }
  st.dead_peer_ends.clear();
  (void)r;
}

}  // namespace ferry::cr
