#include "cli/node_cgroups.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "util/cgroup_mounts.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

namespace ferry::cli::local {
namespace {

constexpr uint64_t kCpuPeriodUs = 100000;

std::string cluster_group(const std::string& cluster_id) {
  return "ferry-" + cluster_id;
}

// The mount points of the hierarchies with cpu and memory (one when v2 or co-mounted).
std::vector<std::string> limit_mounts(bool* v2) {
  auto places = cgroup::limit_places();
  *v2 = places.v2;
  std::vector<std::string> out;
  if (!places.cpu.empty()) out.push_back(places.cpu);
  if (!places.memory.empty() && places.memory != places.cpu) out.push_back(places.memory);
  return out;
}

void write_setting(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) fail_errno(errno, "cannot open {}", path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    fail_errno(errno, "cannot write '{}' to {}", value, path);
}

// A group directory of ours: made here (mode 0755, root's) or already made by an earlier start.
void make_group_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail_errno(errno, "cannot make {}", dir);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0)
    fail("{} is not a control group of root's", dir);
}

}  // namespace

std::vector<std::string> node_cgroup_dirs(const std::string& cluster_id, const std::string& node) {
  bool v2 = false;
  std::vector<std::string> out;
  for (auto& m : limit_mounts(&v2)) out.push_back(m + "/" + cluster_group(cluster_id) + "/" + node);
  return out;
}

void make_node_cgroup(const std::string& cluster_id, const std::string& node,
                      const NodeCapacity& cap) {
  bool v2 = false;
  auto mounts = limit_mounts(&v2);
  if (mounts.empty()) {
    if (cap.cpus > 0 || cap.memory_bytes > 0)
      fail("cannot limit node {}: no control group hierarchy here has cpu and memory", node);
    return;
  }
  auto places = cgroup::limit_places();
  for (auto& m : mounts) {
    const std::string top = m + "/" + cluster_group(cluster_id), dir = top + "/" + node;
    if (v2) write_setting(m + "/cgroup.subtree_control", "+cpu +memory");
    make_group_dir(top);
    if (v2) write_setting(top + "/cgroup.subtree_control", "+cpu +memory");
    make_group_dir(dir);
    // v1: the tasks in a group of their own below ferryd's (node/task_groups.h), and the CPU
    // quota on that group alone. A quota throttles every thread of its group for the rest of a
    // period once spent: with ferryd inside it, every message a saturated node received or sent
    // waited up to half a period, and a 5 MiB task's freeze took 90-200 ms instead of 20-40.
    // A real machine never stops its daemon that way; ferryd's own work is small.
    if (!v2) make_group_dir(dir + "/work");
    if (m == places.cpu) {
      uint64_t quota =
          cap.cpus > 0 ? static_cast<uint64_t>(std::llround(cap.cpus * kCpuPeriodUs)) : 0;
      if (v2) {
        write_setting(dir + "/cpu.max", quota ? fmt::format("{} {}", quota, kCpuPeriodUs)
                                              : fmt::format("max {}", kCpuPeriodUs));
      } else {
        // Beside ferryd's threads the tasks weigh little: a busy node still moves them fast.
        write_setting(dir + "/work/cpu.shares", "64");
        // (The node's own quota first: a child's may not exceed its parent's.)
        write_setting(dir + "/cpu.cfs_quota_us", "-1");
        write_setting(dir + "/work/cpu.cfs_period_us", std::to_string(kCpuPeriodUs));
        write_setting(dir + "/work/cpu.cfs_quota_us", quota ? std::to_string(quota) : "-1");
      }
    }
    if (m == places.memory)
      write_setting(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"),
                    cap.memory_bytes ? std::to_string(cap.memory_bytes) : (v2 ? "max" : "-1"));
  }
}

bool enter_cgroup_dirs(const std::vector<std::string>& dirs) {
  char pid[24];
  int n = std::snprintf(pid, sizeof pid, "%d", static_cast<int>(::getpid()));
  for (auto& d : dirs) {
    int fd = ::open((d + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::write(fd, pid, static_cast<size_t>(n)) == n;
    ::close(fd);
    if (!ok) return false;
  }
  return true;
}

void remove_cluster_cgroups(const std::string& cluster_id) {
  bool v2 = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto& m : limit_mounts(&v2)) {
    const std::string top = m + "/" + cluster_group(cluster_id);
    struct stat st;
    if (::lstat(top.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    for (auto& node : proc::list_dir(top)) {
      const std::string dir = top + "/" + node;
      if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      ::rmdir((dir + "/work").c_str());  // (tried again below while the node's group is busy)
      // A killed node's processes take a moment to leave their group.
      while (::rmdir(dir.c_str()) != 0 && errno == EBUSY &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ::rmdir((dir + "/work").c_str());
      }
    }
    ::rmdir(top.c_str());
  }
}

}  // namespace ferry::cli::local
