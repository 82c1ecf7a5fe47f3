#include "node/file_checks.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include <xxhash.h>

#include "cr/resources/memory_map.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"
#include "util/stat_time.h"

namespace ferry::node {
namespace {

bool deleted(const std::string& p) {
  return p.size() > 10 && p.compare(p.size() - 10, 10, " (deleted)") == 0;
}

}  // namespace

uint64_t content_hash(const std::string& path) {
  // The key holds what cannot be set back by hand (inode and ctime), so a file rewritten with
  // its old size and mtime restored is hashed again.
  using Key = std::tuple<std::string, dev_t, ino_t, off_t, int64_t, int64_t>;
  static std::mutex mu;
  static std::map<Key, uint64_t> cache;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) fail_errno(errno, "cannot open {}", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail_errno(errno, "cannot stat {}", path);
  Key key{path,       st.st_dev,    st.st_ino,
          st.st_size, mtime_ns(st), st.st_ctim.tv_sec * 1000000000ll + st.st_ctim.tv_nsec};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  uint64_t h = XXH3_64bits(nullptr, 0);
  if (st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) fail_errno(errno, "cannot map {}", path);
    h = XXH3_64bits(p, static_cast<size_t>(st.st_size));
    ::munmap(p, static_cast<size_t>(st.st_size));
  }
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = h;
  return h;
}

std::vector<rpc::FileCheck> file_checks(pid_t pid) {
  std::map<std::string, bool> paths;  // path -> executable mapping (content hash wanted)
  auto exe = proc::read_link(proc::path(pid, "exe"));
  paths[exe] = true;
  for (const cr::VmaInfo& v : cr::read_vmas(pid))
    if (!v.name.empty() && v.name[0] == '/' && v.ino != 0 && !deleted(v.name) &&
        v.name.rfind("/dev/zero", 0) != 0 && v.name.rfind("/memfd:", 0) != 0 &&
        v.name.rfind("/SYSV", 0) != 0)
      paths[v.name] = paths[v.name] || (v.prot & PROT_EXEC);
  std::vector<rpc::FileCheck> out;
  for (auto& [path, executable] : paths) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;
    rpc::FileCheck c;
    c.set_path(path);
    c.set_size(static_cast<uint64_t>(st.st_size));
    c.set_mtime_ns(mtime_ns(st));
    if (executable) c.set_content_hash(content_hash(path));
    out.push_back(c);
  }
  // Open regular files: they must exist there (their content may change while the task runs).
  std::set<std::string> open_files;
  for (auto& n : proc::list_dir(proc::path(pid, "fd"))) {
    auto link = proc::try_read_link(proc::path(pid, "fd/" + n));
    if (!link || link->empty() || (*link)[0] != '/' || deleted(*link) || paths.count(*link))
      continue;
    struct stat st;
    if (::stat(link->c_str(), &st) == 0 && S_ISREG(st.st_mode)) open_files.insert(*link);
  }
  for (auto& path : open_files) {
    rpc::FileCheck c;
    c.set_path(path);
    c.set_size(UINT64_MAX);  // existence only
    out.push_back(c);
  }
  return out;
}

std::string check_files(const google::protobuf::RepeatedPtrField<rpc::FileCheck>& files) {
  for (auto& f : files) {
    struct stat st;
    if (::stat(f.path().c_str(), &st) != 0) return fmt::format("file {} is missing here", f.path());
    if (f.size() == UINT64_MAX) continue;
    if (static_cast<uint64_t>(st.st_size) != f.size() || mtime_ns(st) != f.mtime_ns())
      return fmt::format("file {} differs here (size or modification time)", f.path());
    if (f.content_hash() && content_hash(f.path()) != f.content_hash())
      return fmt::format("file {} differs here (content)", f.path());
  }
  return "";
}

std::string held_locks(pid_t pid) {
  for (auto& n : proc::list_dir(proc::path(pid, "fdinfo"))) {
    auto info = proc::try_read_file(proc::path(pid, "fdinfo/" + n));
    if (!info) continue;
    for (auto& line : proc::split(*info, '\n')) {
      if (line.rfind("lock:", 0) != 0) continue;
      auto words = proc::split_ws(line.substr(5));
      std::string kind = words.size() > 1 ? words[1] : "a";
      auto path = proc::try_read_link(proc::path(pid, "fd/" + n)).value_or("?");
      return fmt::format("it holds a file lock ({} on {}); file locks are not moved between nodes",
                         kind, path);
    }
  }
  return "";
}

}  // namespace ferry::node
