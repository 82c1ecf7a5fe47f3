// The control-group hierarchies mounted here, and the few files ferry reads or writes in them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ferry::cgroup {

struct Hierarchy {
  std::string mount_point;
  std::set<std::string> controllers;  // v1: its controllers (and name=...); v2: empty
  bool v2 = false;
};

// The cgroup hierarchies mounted in this process's mount namespace (roots only).
std::vector<Hierarchy> mounted_hierarchies();

// Where CPU and memory limits are set: the v1 hierarchies carrying the `cpu` and `memory`
// controllers, or the v2 hierarchy when its root offers both. Empty mount points when neither.
struct LimitPlaces {
  std::string cpu;     // mount point of the hierarchy with the cpu controller
  std::string memory;  // ... with the memory controller
  bool v2 = false;
};
LimitPlaces limit_places();

// This process's group in the hierarchy mounted at `h` (from /proc/self/cgroup), as a path
// below the mount point.
std::string own_group(const Hierarchy& h);

// The CPU quota of the group at `dir` (a directory of the cpu hierarchy) in CPUs; nullopt when
// it has none.
std::optional<double> cpu_quota(const std::string& dir, bool v2);
// The memory limit of the group at `dir`; nullopt when it has none.
std::optional<uint64_t> memory_limit(const std::string& dir, bool v2);

}  // namespace ferry::cgroup
