// Descriptors ferry provided (see cr/provided_sockets.h). A migration's destination passes the new
// one in the restorer's external_fds, which restore_files() uses before any kind's open(); what
// reaches open_provided() is a restore outside a ferry node, where nobody is at the other end:
// the process keeps the fd number, as a socket whose peer is gone (reads see the end, writes
// EPIPE), and the user is told.
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>
#include <set>

#include "cr/provided_sockets.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

std::mutex mu;
std::set<uint64_t>& inodes() {
  static std::set<uint64_t> s;
  return s;
}

}  // namespace

void add_provided_socket(uint64_t inode) {
  std::lock_guard<std::mutex> lock(mu);
  inodes().insert(inode);
}

void remove_provided_socket(uint64_t inode) {
  std::lock_guard<std::mutex> lock(mu);
  inodes().erase(inode);
}

bool provided_socket(uint64_t inode) {
  std::lock_guard<std::mutex> lock(mu);
  return inodes().count(inode) > 0;
}

bool is_provided_socket(const std::string& link) {
  if (link.rfind("socket:[", 0) != 0 || link.back() != ']') return false;
  try {
    return provided_socket(std::stoull(link.substr(8, link.size() - 9)));
  } catch (const std::exception&) {
    return false;
  }
}

void dump_provided(image::OpenFile* f) {
  f->mutable_provided()->set_what("control");
}

UniqueFd open_provided(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    fail_errno(errno, "socketpair");
  UniqueFd mine(sv[0]);
  ::close(sv[1]);
  int num = s.fd_numbers.at(f.id()).front();
  r.notes.push_back(fmt::format(
      "fd {} was ferry's control descriptor; restored outside a ferry node it has no peer", num));
  return mine;
}

}  // namespace ferry::cr
