#include "snapshot/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "util/error.h"
#include "util/fd.h"
#include "util/owned_files.h"
#include "util/proc.h"

namespace ferry::snapshot {
namespace {

// Removes everything under dirfd, entry by entry, never following a link, and only what is ours.
void remove_contents(int dirfd, const std::string& where) {
  int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) fail_errno(errno, "dup");
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    fail_errno(errno, "cannot list {}", where);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
  ::closedir(d);
  for (auto& name : names) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (st.st_uid != ::geteuid())
      fail("{}/{} is not ferry's own; the snapshot is left as it is", where, name);
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) fail_errno(errno, "cannot open {}/{}", where, name);
      remove_contents(sub.get(), where + "/" + name);
      if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0)
        fail_errno(errno, "cannot remove {}/{}", where, name);
    } else if (::unlinkat(dirfd, name.c_str(), 0) != 0) {
      fail_errno(errno, "cannot remove {}/{}", where, name);
    }
  }
}

}  // namespace

bool SnapshotStore::valid_id(const std::string& id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::string SnapshotStore::snapshot_dir(const std::string& id) {
  if (!valid_id(id)) fail_as(Error::Kind::kBadInput, "'{}' is not a snapshot id", id);
  owned::make_or_open_dir(root_, "snapshot store");
  std::string dir = root_ + "/" + id;
  owned::make_or_open_dir(dir, "snapshot directory");
  return dir;
}

std::string SnapshotStore::task_dir(const std::string& id, const std::string& task) {
  std::string tasks = snapshot_dir(id) + "/tasks";
  owned::make_or_open_dir(tasks, "snapshot directory");
  std::string dir = tasks + "/" + task;
  owned::make_or_open_dir(dir, "snapshot image directory");
  return dir;
}

std::string SnapshotStore::channel_path(const std::string& id, uint32_t channel,
                                        const char* suffix) {
  std::string channels = snapshot_dir(id) + "/channels";
  owned::make_or_open_dir(channels, "snapshot directory");
  return channels + "/" + std::to_string(channel) + suffix;
}

void SnapshotStore::save_report(const rpc::SnapshotReport& report) {
  const std::string dir = snapshot_dir(report.id());
  const std::string tmp = dir + "/report.pb.tmp", path = dir + "/report.pb";
  std::string bytes = report.SerializeAsString();
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) fail_errno(errno, "cannot create {}", tmp);
  if (::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) ||
      ::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno ? errno : ENOSPC;
    ::unlink(tmp.c_str());
    fail_errno(err, "cannot write {}", path);
  }
}

std::vector<rpc::SnapshotReport> SnapshotStore::reports() const {
  std::vector<rpc::SnapshotReport> out;
  struct stat st;
  if (::lstat(root_.c_str(), &st) != 0) return out;
  for (const std::string& id : proc::list_dir(root_)) {
    if (!valid_id(id)) continue;
    try {
      UniqueFd dir = owned::open_dir(root_ + "/" + id, "snapshot directory");
      struct stat fst;
      std::string problem;
      UniqueFd fd = owned::open_file_at(dir.get(), "report.pb", "snapshot report", &fst, &problem);
      if (!problem.empty()) fail("{}", problem);
      std::string bytes(static_cast<size_t>(fst.st_size), '\0');
      if (::read(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
        fail_errno(errno, "cannot read the report");
      rpc::SnapshotReport r;
      if (!r.ParseFromString(bytes) || r.id() != id) fail("the report is corrupted");
      out.push_back(std::move(r));
    } catch (const std::exception& e) {
      // (A snapshot whose report is not here is another node's part: not an error.)
      if (::faccessat(AT_FDCWD, (root_ + "/" + id + "/report.pb").c_str(), F_OK, 0) == 0)
        spdlog::warn("snapshot {}: {}", id, e.what());
    }
  }
  return out;
}

bool SnapshotStore::remove(const std::string& id) {
  if (!valid_id(id)) fail_as(Error::Kind::kBadInput, "'{}' is not a snapshot id", id);
  struct stat st;
  const std::string dir = root_ + "/" + id;
  if (::lstat(dir.c_str(), &st) != 0) return false;
  UniqueFd root = owned::open_dir(root_, "snapshot store");
  UniqueFd fd = owned::open_dir(dir, "snapshot directory");
  remove_contents(fd.get(), dir);
  if (::unlinkat(root.get(), id.c_str(), AT_REMOVEDIR) != 0)
    fail_errno(errno, "cannot remove {}", dir);
  return true;
}

}  // namespace ferry::snapshot
