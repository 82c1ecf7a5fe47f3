// Files reached by a path: regular files (and unlinked ones, via ghost files), directories,
// character devices, terminals, and memfds.
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "cr/dump_context.h"
#include "cr/files/file_kinds.h"
#include "cr/ghost_files.h"
#include "cr/image_paths.h"
#include "cr/restorer.h"
#include "cr/shmem.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

image::FileIdentity identity_of(const struct stat& st) {
  image::FileIdentity id;
  id.set_dev(st.st_dev);
  id.set_ino(st.st_ino);
  id.set_size(static_cast<uint64_t>(st.st_size));
  id.set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
  id.set_mode(st.st_mode);
  return id;
}

bool is_tty(int fd) {
  termios t;
  return ::tcgetattr(fd, &t) == 0;
}

// A terminal for the restored process: ferry's own stdio when it is one, preferring the same fd
// number; else the old device if it still exists.
UniqueFd open_terminal(Restorer& r, const image::OpenFile& f, const FileRestoreState& s) {
  std::vector<int> candidates;
  for (int n : s.fd_numbers.at(f.id()))
    if (n <= 2) candidates.push_back(n);
  for (int n : {0, 1, 2}) candidates.push_back(n);
  for (int n : candidates)
    if (is_tty(n)) {
      UniqueFd fd(::fcntl(n, F_DUPFD_CLOEXEC, 0));
      if (fd) return fd;
    }
  try {
    UniqueFd fd = open_image_path(r.image(), f.terminal().path(),
                                  (f.flags() & O_ACCMODE) | O_NOCTTY | O_NONBLOCK,
                                  PathKind::kDevice, "terminal");
    if (is_tty(fd.get())) {
      ::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE);
      return fd;
    }
  } catch (const Error&) {
    // (no such terminal any more: the advice below)
  }
  fail("the process had a terminal ({}) on fd {}; run the restore from a terminal",
       f.terminal().path(), s.fd_numbers.at(f.id()).front());
}

}  // namespace

uint32_t reopen_flags(uint32_t flags) {
  return flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | O_SYNC | O_DSYNC |
                  O_PATH | O_LARGEFILE | O_DIRECTORY);
}

UniqueFd reopen_local(int fd, uint32_t flags, const std::string& what) {
  UniqueFd out(::open(fmt::format("/proc/self/fd/{}", fd).c_str(),
                      static_cast<int>(reopen_flags(flags)) | O_CLOEXEC));
  if (!out) fail_errno(errno, "cannot reopen {}", what);
  return out;
}

void dump_path_file(DumpContext& ctx, FdProbe& p, image::OpenFile* f, image::Memory* m) {
  const struct stat& st = p.st;
  if (p.link.rfind("/memfd:", 0) == 0 && S_ISREG(st.st_mode)) {
    UniqueFd mine(::fcntl(p.local.get(), F_DUPFD_CLOEXEC, 0));
    f->mutable_memfd()->set_shmem_id(register_shmem(ctx, m, std::move(mine), st, p.link));
    return;
  }
  if (S_ISREG(st.st_mode)) {
    if (p.link.rfind("/proc/", 0) == 0)
      fail("cannot checkpoint process {}: fd {} is the procfs file {}", ctx.pid(), p.num, p.link);
    image::RegularFile* r = f->mutable_regular();
    *r->mutable_identity() = identity_of(st);
    if (st.st_nlink == 0 || ends_with(p.link, " (deleted)")) {
      std::string path =
          ends_with(p.link, " (deleted)") ? p.link.substr(0, p.link.size() - 10) : p.link;
      r->set_path(path);
      UniqueFd mine(::fcntl(p.local.get(), F_DUPFD_CLOEXEC, 0));
      r->set_ghost_id(register_ghost(ctx, m, path, std::move(mine), st));
    } else {
      r->set_path(p.link);
    }
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    f->mutable_directory()->set_path(p.link);
    *f->mutable_directory()->mutable_identity() = identity_of(st);
    return;
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2)
      fail("cannot checkpoint process {}: fd {} is a pseudo-terminal master (/dev/ptmx)", ctx.pid(),
           p.num);
    if (S_ISCHR(st.st_mode) && is_tty(p.local.get())) {
      f->mutable_terminal()->set_path(p.link);
      return;
    }
    image::CharDevice* d = f->mutable_chardev();
    d->set_path(p.link);
    d->set_rdev_major(major(st.st_rdev));
    d->set_rdev_minor(minor(st.st_rdev));
    return;
  }
  fail("cannot checkpoint process {}: fd {} ({}) is of an unsupported kind", ctx.pid(), p.num,
       p.link);
}

UniqueFd open_path_file(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  // O_NONBLOCK for the open itself (a device must not wait for a carrier); the real status
  // flags are set right after.
  int flags = static_cast<int>(reopen_flags(f.flags())) | O_NOCTTY | O_NONBLOCK;
  const image::Image& img = r.image();
  UniqueFd fd;
  switch (f.kind_case()) {
    case image::OpenFile::kRegular: {
      const image::RegularFile& rf = f.regular();
      if (rf.ghost_id()) {
        fd = reopen_local(r.ghost_fds.at(rf.ghost_id()).get(), f.flags(), rf.path());
        break;
      }
      struct stat st;
      fd = open_image_path(img, rf.path(), flags, PathKind::kRegular, "file",
                           same_inode(rf.identity()), &st);
      if (st.st_ino != rf.identity().ino() || st.st_dev != rf.identity().dev())
        r.notes.push_back(
            fmt::format("{} was replaced by another file since the checkpoint", rf.path()));
      break;
    }
    case image::OpenFile::kDirectory:
      fd = open_image_path(img, f.directory().path(), flags | O_DIRECTORY, PathKind::kDirectory,
                           "directory", same_inode(f.directory().identity()));
      break;
    case image::OpenFile::kChardev: {
      const image::CharDevice& d = f.chardev();
      struct stat st;
      fd = open_image_path(img, d.path(), flags, PathKind::kDevice, "device",
                           same_device(d.rdev_major(), d.rdev_minor()), &st);
      if (major(st.st_rdev) != d.rdev_major() || minor(st.st_rdev) != d.rdev_minor())
        fail("device {} is not the same device as at the checkpoint", d.path());
      break;
    }
    case image::OpenFile::kTerminal:
      return open_terminal(r, f, s);
    case image::OpenFile::kMemfd:
      fd = reopen_local(r.shmem_fds.at(f.memfd().shmem_id()).get(), f.flags(), "memfd");
      break;
    default:
      fail("internal: not a path file");
  }
  if (!(f.flags() & O_PATH)) {
    if (::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE) != 0)
      fail_errno(errno, "cannot restore the status flags of fd {}",
                 s.fd_numbers.at(f.id()).front());
    if (f.pos() && ::lseek(fd.get(), f.pos(), SEEK_SET) < 0)
      fail_errno(errno, "cannot restore the file position");
  }
  return fd;
}

}  // namespace ferry::cr
