// Files reached by a path: regular files (and unlinked ones, via ghost files), directories,
// character devices, terminals, and memfds.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/resources/ghost_files.h"
#include "cr/image_paths.h"
#include "cr/restorer.h"
#include "cr/resources/shmem.h"
#include "util/error.h"
#include "util/stat_time.h"

namespace ferry::cr {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
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

// A file unlinked under the name the process knows but linked under another: the same inode must
// come back (a copy would split it, and the process's writes would no longer reach the file
// everyone else sees). Its handle names it within its file system.
void dump_handle(DumpContext& ctx, FdProbe& p, image::RegularFile* r) {
  std::vector<char> buf(sizeof(file_handle) + MAX_HANDLE_SZ);
  auto* fh = reinterpret_cast<file_handle*>(buf.data());
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  if (::name_to_handle_at(p.local.get(), "", fh, &mount_id, AT_EMPTY_PATH) != 0)
    fail_errno(errno,
               "cannot checkpoint process {}: fd {} is {}, unlinked there but still linked "
               "elsewhere, and its file system cannot name it by handle",
               ctx.pid(), p.num, r->path());
  r->set_handle_type(fh->handle_type);
  r->set_handle(std::string(reinterpret_cast<const char*>(fh->f_handle), fh->handle_bytes));
}

// The inode a handle names, if it is still the one of the image: on this boot only (a handle
// outlives a reboot, but the image's device numbers may not), found through the directory the
// unlinked name was in or, failing that, the root of the file system of its device.
UniqueFd open_by_handle(Restorer& r, const image::OpenFile& f, int flags) {
  const image::RegularFile& rf = f.regular();
  if (!taken_this_boot(r.image()))
    fail("{} was unlinked but is still linked elsewhere; it can be reopened only on the node and "
         "boot it was checkpointed on",
         rf.path());
  std::string dir = rf.path().substr(0, rf.path().rfind('/') + 1);
  // Not O_PATH: open_by_handle_at() wants a real descriptor in the file system.
  UniqueFd mount(::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat mst;
  if (!mount || ::fstat(mount.get(), &mst) != 0 || mst.st_dev != rf.identity().dev())
    fail("{} was unlinked but is still linked elsewhere, and its directory {} is gone or on "
         "another file system now",
         rf.path(), dir);
  std::vector<char> buf(sizeof(file_handle) + rf.handle().size());
  auto* fh = reinterpret_cast<file_handle*>(buf.data());
  fh->handle_bytes = static_cast<unsigned>(rf.handle().size());
  fh->handle_type = rf.handle_type();
  std::memcpy(fh->f_handle, rf.handle().data(), rf.handle().size());
  UniqueFd fd(::open_by_handle_at(mount.get(), fh, flags | O_CLOEXEC));
  if (!fd) fail_errno(errno, "cannot reopen {} (unlinked, linked elsewhere) by its handle", rf.path());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || st.st_dev != rf.identity().dev() ||
      st.st_ino != rf.identity().ino() || !S_ISREG(st.st_mode))
    fail("the handle of {} names another file now", rf.path());
  return fd;
}

}  // namespace

image::FileIdentity identity_of(const struct stat& st) {
  image::FileIdentity id;
  id.set_dev(st.st_dev);
  id.set_ino(st.st_ino);
  id.set_size(static_cast<uint64_t>(st.st_size));
  id.set_mtime_ns(mtime_ns(st));
  id.set_mode(st.st_mode);
  id.set_uid(st.st_uid);
  id.set_gid(st.st_gid);
  return id;
}

uint32_t reopen_flags(uint32_t flags) {
  return flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | O_SYNC | O_DSYNC |
                  O_PATH | O_LARGEFILE | O_DIRECTORY);
}

UniqueFd reopen_local(int fd, uint32_t flags, const std::string& what) {
  // O_NOCTTY: a terminal opened by a session leader (ferryd) would become its controlling one.
  UniqueFd out(::open(fmt::format("/proc/self/fd/{}", fd).c_str(),
                      static_cast<int>(reopen_flags(flags)) | O_CLOEXEC | O_NOCTTY));
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
      if (st.st_nlink > 0) {
        dump_handle(ctx, p, r);
        return;
      }
      UniqueFd mine(::fcntl(p.local.get(), F_DUPFD_CLOEXEC, 0));
      r->set_ghost_id(register_ghost(ctx, m, path, std::move(mine), st));
    } else {
      r->set_path(p.link);
    }
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    std::string path = p.link;
    f->mutable_directory()->set_deleted(st.st_nlink == 0 && strip_deleted_suffix(path));
    f->mutable_directory()->set_path(path);
    *f->mutable_directory()->mutable_identity() = identity_of(st);
    return;
  }
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    if (dump_pty(ctx, p, f)) return;
    if (S_ISCHR(st.st_mode) && is_tty(p.local.get())) {
      f->mutable_terminal()->set_path(p.link);
      return;
    }
    image::CharDevice* d = f->mutable_chardev();
    std::string path = p.link;
    d->set_deleted(strip_deleted_suffix(path));
    d->set_path(path);
    *d->mutable_identity() = identity_of(st);
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
      if (!rf.handle().empty()) {
        fd = open_by_handle(r, f, flags);
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
      if (f.directory().deleted()) {
        fd = recreate_directory(r, f.directory(), flags, s);
        break;
      }
      fd = open_image_path(img, f.directory().path(), flags | O_DIRECTORY, PathKind::kDirectory,
                           "directory", same_inode(f.directory().identity()));
      break;
    case image::OpenFile::kChardev: {
      const image::CharDevice& d = f.chardev();
      if (d.deleted()) {
        fd = recreate_device(r, d, f.flags(), flags, s);
        break;
      }
      struct stat st;
      fd = open_image_path(img, d.path(), flags, PathKind::kDevice, "device",
                           same_device(d.rdev_major(), d.rdev_minor()), &st);
      if (major(st.st_rdev) != d.rdev_major() || minor(st.st_rdev) != d.rdev_minor())
        fail("device {} is not the same device as at the checkpoint", d.path());
      break;
    }
    case image::OpenFile::kTerminal:
      return open_terminal(r, f, s);
    case image::OpenFile::kPty:
      return open_pty(r, f, s);
    case image::OpenFile::kMemfd:
    {
      // The first read-write description is memfd_create()'s own file, as in the process: a
      // reopen through /proc would count as a writer, and execveat() of the memfd would then
      // fail with ETXTBSY.
      int created = r.shmem_fds.at(f.memfd().shmem_id()).get();
      if ((f.flags() & O_ACCMODE) == O_RDWR &&
          s.memfd_created_given.insert(f.memfd().shmem_id()).second) {
        fd.reset(::fcntl(created, F_DUPFD_CLOEXEC, 0));
        if (!fd) fail_errno(errno, "dup");
      } else {
        fd = reopen_local(created, f.flags(), "memfd");
      }
      break;
    }
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
