#include "util/owned_files.h"

#include <fcntl.h>
#include <unistd.h>

#include "util/error.h"

namespace ferry {

const char* file_type_name(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG:
      return "a regular file";
    case S_IFDIR:
      return "a directory";
    case S_IFIFO:
      return "a FIFO";
    case S_IFLNK:
      return "a symbolic link";
    case S_IFSOCK:
      return "a socket";
    case S_IFCHR:
      return "a character device";
    case S_IFBLK:
      return "a block device";
    default:
      return "of an unknown type";
  }
}

}  // namespace ferry

namespace ferry::owned {
namespace {

std::string owner_problem(const struct stat& st) {
  uid_t me = ::geteuid();
  if (st.st_uid != me) return fmt::format("is owned by uid {}, not by uid {} (ferry's)", st.st_uid, me);
  return "";
}

}  // namespace

std::string dir_problem(const struct stat& st) {
  if (!S_ISDIR(st.st_mode)) return fmt::format("is {}, not a directory", file_type_name(st.st_mode));
  if (auto p = owner_problem(st); !p.empty()) return p;
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return fmt::format("is writable by others (mode {:04o})", st.st_mode & 07777);
  return "";
}

std::string file_problem(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return fmt::format("is {}, not a regular file", file_type_name(st.st_mode));
  if (auto p = owner_problem(st); !p.empty()) return p;
  if (st.st_mode & 077)
    return fmt::format("is not private (mode {:04o}; ferry's files are 0600)", st.st_mode & 07777);
  return "";
}

UniqueFd open_dir(const std::string& path, const std::string& what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) {
      struct stat st;
      if (::lstat(path.c_str(), &st) == 0)
        fail("{} {} is {}, not a directory", what, path, file_type_name(st.st_mode));
    }
    fail_errno(errno, "cannot open {} {}", what, path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, "cannot stat {} {}", what, path);
  if (auto p = dir_problem(st); !p.empty()) fail("{} {} {}", what, path, p);
  return fd;
}

UniqueFd make_or_open_dir(const std::string& path, const std::string& what, bool* created) {
  bool made = ::mkdir(path.c_str(), 0700) == 0;
  if (!made && errno != EEXIST) fail_errno(errno, "cannot create {} {}", what, path);
  if (created) *created = made;
  return open_dir(path, what);
}

UniqueFd open_file_at(int dirfd, const std::string& name, const std::string& what,
                      struct stat* st_out, std::string* problem) {
  // O_NONBLOCK: a FIFO in place of the file opens at once (and is refused below) instead of
  // waiting for a writer forever.
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP) fail("{} is a symbolic link; ferry does not follow links to its files", what);
    if (errno == ENOENT) fail("{} is missing", what);
    fail_errno(errno, "cannot open {}", what);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, "cannot stat {}", what);
  if (!S_ISREG(st.st_mode)) fail("{} is {}, not a regular file", what, file_type_name(st.st_mode));
  std::string p = file_problem(st);
  if (!p.empty()) {
    if (!problem) fail("{} {}", what, p);
    if (problem->empty()) *problem = what + " " + p;
  }
  if (st_out) *st_out = st;
  return fd;
}

}  // namespace ferry::owned
