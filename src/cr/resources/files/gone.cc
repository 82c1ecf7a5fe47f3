#include "cr/resources/files/gone.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>

#include "cr/resources/files/file_kinds.h"
#include "cr/image_paths.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

bool is_pty_slave_major(uint32_t major) {
  return major >= 136 && major <= 143;  // UNIX98_PTY_SLAVE_MAJOR .. + UNIX98_PTY_MAJOR_COUNT
}

void own_as(const std::string& path, const image::FileIdentity& id, const std::string& what) {
  if (::lchown(path.c_str(), id.uid(), id.gid()) != 0 ||
      ::chmod(path.c_str(), id.mode() & 01777) != 0)
    fail_errno(errno, "cannot give the re-made {} its owner {}:{} and mode {:o}", what, id.uid(),
               id.gid(), id.mode() & 07777);
}

// A slave whose master was closed: a new pair, its master closed at once, hangs up the same
// way (reads end, writes fail with EIO). Only its number differs.
UniqueFd hung_up_pty(uint32_t image_flags) {
  UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master || ::unlockpt(master.get()) != 0)
    fail_errno(errno, "cannot make a pseudo-terminal for a hung-up one");
  return open_pty_slave(master.get(), image_flags);
}

}  // namespace

ScratchDir::ScratchDir() {
  char templ[] = "/tmp/ferry-gone-XXXXXX";
  if (!::mkdtemp(templ)) fail_errno(errno, "cannot make a private directory for unlinked files");
  path_ = templ;
  // Others may pass through to open what they could open before (a device as its owner), never
  // list or add.
  ::chmod(path_.c_str(), 0711);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ScratchDir::fresh_name() {
  return fmt::format("{}/{}", path_, next_++);
}

bool strip_deleted_suffix(std::string& link) {
  static const std::string suffix = " (deleted)";
  if (link.size() <= suffix.size() ||
      link.compare(link.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  link.resize(link.size() - suffix.size());
  return true;
}

UniqueFd recreate_device(Restorer& r, const image::CharDevice& d, uint32_t image_flags, int flags,
                         FileRestoreState& s) {
  if (is_pty_slave_major(d.rdev_major())) return hung_up_pty(image_flags);
  if (!s.scratch) s.scratch = std::make_unique<ScratchDir>();
  std::string node = s.scratch->fresh_name();
  const mode_t type = S_ISBLK(d.identity().mode()) ? S_IFBLK : S_IFCHR;
  if (::mknod(node.c_str(), type | 0600, makedev(d.rdev_major(), d.rdev_minor())) != 0)
    fail_errno(errno, "cannot make a node for deleted device {} ({}:{})", d.path(), d.rdev_major(),
               d.rdev_minor());
  own_as(node, d.identity(), "device node " + d.path());
  UniqueFd fd;
  {
    // As the process: the node has the mode and owner the deleted one had, so it opens only
    // what the process could open then.
    ActingAs as(r.image().creds());
    fd.reset(::open(node.c_str(), flags | O_CLOEXEC));
  }
  int err = errno;
  ::unlink(node.c_str());
  if (!fd) fail_errno(err, "cannot open a node for deleted device {}", d.path());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || (st.st_mode & S_IFMT) != type ||
      major(st.st_rdev) != d.rdev_major() || minor(st.st_rdev) != d.rdev_minor())
    fail("the node made for deleted device {} is not that device", d.path());
  return fd;
}

UniqueFd recreate_directory(Restorer& r, const image::Directory& d, int flags,
                            FileRestoreState& s) {
  if (!s.scratch) s.scratch = std::make_unique<ScratchDir>();
  std::string dir = s.scratch->fresh_name();
  if (::mkdir(dir.c_str(), 0700) != 0)
    fail_errno(errno, "cannot make a directory for removed directory {}", d.path());
  own_as(dir, d.identity(), "directory " + d.path());
  UniqueFd fd;
  {
    ActingAs as(r.image().creds());
    fd.reset(::open(dir.c_str(), flags | O_DIRECTORY | O_CLOEXEC));
  }
  int err = errno;
  // Removed, as it was: nothing can be made in it any more.
  ::rmdir(dir.c_str());
  if (!fd) fail_errno(err, "cannot open a directory for removed directory {}", d.path());
  return fd;
}

int recreated_fifo(const image::PipeEnd& e, FileRestoreState& s) {
  auto it = s.gone_fifos.find(e.pipe_id());
  if (it != s.gone_fifos.end()) return it->second.get();
  if (!s.scratch) s.scratch = std::make_unique<ScratchDir>();
  std::string path = s.scratch->fresh_name();
  if (::mkfifo(path.c_str(), 0600) != 0)
    fail_errno(errno, "cannot make a FIFO for unlinked FIFO {}", e.fifo_path());
  own_as(path, e.fifo_identity(), "FIFO " + e.fifo_path());
  UniqueFd anchor(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  int err = errno;
  ::unlink(path.c_str());
  if (!anchor) fail_errno(err, "cannot open a FIFO for unlinked FIFO {}", e.fifo_path());
  return (s.gone_fifos[e.pipe_id()] = std::move(anchor)).get();
}

}  // namespace ferry::cr
