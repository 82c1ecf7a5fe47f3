#include "cr/image_paths.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>

#include "util/error.h"
#include "util/owned_files.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

// The raw system calls: glibc's wrappers of setgroups() change every thread of ferry.
long set_groups(const std::vector<gid_t>& g) {
  return ::syscall(SYS_setgroups, g.size(), g.data());
}
uid_t current_fsuid() {
  return static_cast<uid_t>(::syscall(SYS_setfsuid, -1));
}
gid_t current_fsgid() {
  return static_cast<gid_t>(::syscall(SYS_setfsgid, -1));
}

}  // namespace

ActingAs::ActingAs(const image::Credentials& c) {
  if (c.uids_size() != 4 || c.gids_size() != 4)
    fail("internal: the image's credentials are missing (needed to open its files)");
  uid_t fsuid = c.uids(3);
  gid_t fsgid = c.gids(3);
  std::vector<gid_t> groups(c.groups().begin(), c.groups().end());
  if (fsuid == ::geteuid() && fsuid == 0) return;  // a root process: root opens its files
  int n = ::getgroups(0, nullptr);
  saved_groups_.resize(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0 && ::getgroups(n, saved_groups_.data()) != n) fail_errno(errno, "getgroups");
  saved_fsuid_ = current_fsuid();
  saved_fsgid_ = current_fsgid();
  if (set_groups(groups) != 0) fail_errno(errno, "cannot take the process's groups");
  active_ = true;
  ::syscall(SYS_setfsgid, fsgid);
  ::syscall(SYS_setfsuid, fsuid);
  if (current_fsgid() != fsgid || current_fsuid() != fsuid)
    fail("cannot take the process's file-system identity (uid {}, gid {})", fsuid, fsgid);
}

ActingAs::~ActingAs() {
  if (!active_) return;
  // Back to root: the file-system capabilities come back with fsuid 0.
  ::syscall(SYS_setfsuid, saved_fsuid_);
  ::syscall(SYS_setfsgid, saved_fsgid_);
  set_groups(saved_groups_);
}

const char* path_kind_name(PathKind k) {
  switch (k) {
    case PathKind::kRegular:
      return "a regular file";
    case PathKind::kDirectory:
      return "a directory";
    case PathKind::kDevice:
      return "a device";
    case PathKind::kFifo:
      return "a FIFO";
  }
  return "?";
}

bool is_kind(const struct stat& st, PathKind k) {
  switch (k) {
    case PathKind::kRegular:
      return S_ISREG(st.st_mode);
    case PathKind::kDirectory:
      return S_ISDIR(st.st_mode);
    case PathKind::kDevice:
      return S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode);
    case PathKind::kFifo:
      return S_ISFIFO(st.st_mode);
  }
  return false;
}

SameObject same_inode(const image::FileIdentity& id) {
  return [dev = id.dev(), ino = id.ino()](const struct stat& st) {
    return st.st_dev == dev && st.st_ino == ino;
  };
}

SameObject same_device(uint32_t maj, uint32_t min) {
  return [maj, min](const struct stat& st) {
    return major(st.st_rdev) == maj && minor(st.st_rdev) == min;
  };
}

std::string boot_id() {
  static const std::string id = [] {
    auto s = proc::try_read_file("/proc/sys/kernel/random/boot_id");
    return s ? std::string(proc::trim(*s)) : std::string();
  }();
  return id;
}

bool taken_this_boot(const image::Image& img) {
  return !img.process().boot_id().empty() && img.process().boot_id() == boot_id();
}

namespace {

UniqueFd open_handle(const std::string& path, PathKind kind, const std::string& what,
                     uid_t as_uid, struct stat* st) {
  UniqueFd handle(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!handle) {
    if (errno == EACCES)
      fail("cannot reopen {} {}: the process's user (uid {}) may not reach it", what, path,
           as_uid);
    fail_errno(errno, "cannot reopen {} {}", what, path);
  }
  if (::fstat(handle.get(), st) != 0) fail_errno(errno, "cannot stat {} {}", what, path);
  if (!is_kind(*st, kind))
    fail("{} {} is now {}, not {} as at the checkpoint", what, path, file_type_name(st->st_mode),
         path_kind_name(kind));
  return handle;
}

UniqueFd reopen(const UniqueFd& handle, int flags, const std::string& path,
                const std::string& what, uid_t as_uid) {
  UniqueFd fd(::open(fmt::format("/proc/self/fd/{}", handle.get()).c_str(), flags | O_CLOEXEC));
  if (!fd) {
    if (errno == EACCES)
      fail("cannot reopen {} {}: the process's user (uid {}) may not open it so, and it is not "
           "the file the process had open; ferry never gives a process more rights than it has",
           what, path, as_uid);
    fail_errno(errno, "cannot reopen {} {}", what, path);
  }
  return fd;
}

}  // namespace

UniqueFd open_image_path(const image::Image& img, const std::string& path, int flags,
                         PathKind kind, const std::string& what, const SameObject& same,
                         struct stat* st_out) {
  const image::Credentials& creds = img.creds();
  uid_t as_uid = creds.uids_size() == 4 ? creds.uids(3) : 0;
  struct stat st;
  if (same && taken_this_boot(img)) {
    // Looked at with ferry's rights: the very object the process held comes back as it was.
    UniqueFd handle = open_handle(path, kind, what, 0, &st);
    if (same(st)) {
      if (st_out) *st_out = st;
      if (flags & O_PATH) return handle;
      return reopen(handle, flags, path, what, 0);
    }
  }
  // Anything else only as far as the process's own user may go.
  ActingAs as(creds);
  UniqueFd handle = open_handle(path, kind, what, as_uid, &st);
  if (st_out) *st_out = st;
  if (flags & O_PATH) return handle;
  return reopen(handle, flags, path, what, as_uid);
}

std::vector<std::string> check_image_paths(const image::Image& img) {
  std::vector<std::string> problems;
  auto check = [&](const std::string& path, PathKind kind, const std::string& what) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      problems.push_back(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
    else if (!is_kind(st, kind))
      problems.push_back(fmt::format("{} {} is now {}, not {}", what, path,
                                     file_type_name(st.st_mode), path_kind_name(kind)));
  };
  check(img.process().exe_path(), PathKind::kRegular, "executable");
  check(img.attrs().cwd(), PathKind::kDirectory, "working directory");
  for (auto& mf : img.memory().mapped_files())
    if (!mf.ghost_id()) check(mf.path(), PathKind::kRegular, "mapped file");
  for (auto& f : img.files().files()) {
    switch (f.kind_case()) {
      case image::OpenFile::kRegular:
        if (!f.regular().ghost_id()) check(f.regular().path(), PathKind::kRegular, "open file");
        break;
      case image::OpenFile::kDirectory:
        check(f.directory().path(), PathKind::kDirectory, "open directory");
        break;
      case image::OpenFile::kChardev:
        check(f.chardev().path(), PathKind::kDevice, "open device");
        break;
      case image::OpenFile::kPipe:
        if (f.pipe().is_fifo()) check(f.pipe().fifo_path(), PathKind::kFifo, "open FIFO");
        break;
      default:
        break;
    }
  }
  return problems;
}

}  // namespace ferry::cr
