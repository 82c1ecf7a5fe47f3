// Descriptors ferry provided (see cr/provided.h): a control socket, an end of a channel
// of messages (a channel's pipe is a pipe: pipes.cc). A migration's destination passes the new
// one in the restorer's external_fds, which restore_files() uses before any kind's open(); what
// reaches open_provided() is a restore outside a ferry node, where nobody is at the other end:
// the process keeps the fd number, as a socket whose peer is gone (reads see the end, writes
// EPIPE), and the user is told.
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "cr/provided.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/resources/files/sockets.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

std::mutex mu;
std::map<uint64_t, image::Provided>& inodes() {
  static std::map<uint64_t, image::Provided> s;
  return s;
}

uint64_t inode_of(const std::string& link) {
  if (link.rfind("socket:[", 0) != 0 || link.back() != ']') return 0;
  try {
    return std::stoull(link.substr(8, link.size() - 9));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

void add_provided_socket(uint64_t inode, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu);
  inodes()[inode].set_what(what);
}

void add_provided_channel(uint64_t inode, int channel_fd) {
  std::lock_guard<std::mutex> lock(mu);
  image::Provided& p = inodes()[inode];
  p.set_what(kProvidedChannel);
  p.set_channel_fd(channel_fd);
}

void remove_provided(uint64_t inode) {
  std::lock_guard<std::mutex> lock(mu);
  inodes().erase(inode);
}

std::optional<image::Provided> provided_of(uint64_t inode) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = inodes().find(inode);
  if (it == inodes().end()) return std::nullopt;
  return it->second;
}

bool is_provided_socket(const std::string& link) {
  uint64_t inode = inode_of(link);
  return inode && provided_of(inode);
}

void dump_provided(const std::string& link, int fd, image::OpenFile* f) {
  std::optional<image::Provided> p = provided_of(inode_of(link));
  if (!p) return;
  *f->mutable_provided() = *p;
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    fail_errno(errno, "cannot read the type of ferry's {} socket", p->what());
  dump_socket_options(fd, AF_UNIX, type, 0, f->mutable_provided()->mutable_options());
}

UniqueFd open_provided(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  bool channel = f.provided().what() == kProvidedChannel;
  int sv[2];
  if (::socketpair(AF_UNIX, (channel ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0, sv) != 0)
    fail_errno(errno, "socketpair");
  UniqueFd mine(sv[0]);
  ::close(sv[1]);
  restore_socket_options(mine.get(), f.provided().options());
  int num = s.fd_numbers.at(f.id()).front();
  r.notes.push_back(
      fmt::format("fd {} was {}; restored outside a ferry node it has no peer", num,
                  channel ? "the end of a channel of its job" : "ferry's control descriptor"));
  return mine;
}

}  // namespace ferry::cr
