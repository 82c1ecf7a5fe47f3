#include "util/cgroup_mounts.h"

#include <unistd.h>

#include "util/proc.h"

namespace ferry::cgroup {

std::vector<Hierarchy> mounted_hierarchies() {
  std::vector<Hierarchy> out;
  for (auto& line : proc::split(proc::read_file("/proc/self/mountinfo"), '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto before = proc::split_ws(line.substr(0, dash)),
         after = proc::split_ws(line.substr(dash + 3));
    if (before.size() < 5 || after.size() < 3) continue;
    Hierarchy h;
    h.mount_point = before[4];
    if (before[3] != "/") continue;  // a bind mount of a part: not the hierarchy's root
    if (after[0] == "cgroup2") {
      h.v2 = true;
    } else if (after[0] == "cgroup") {
      // The super options name the controllers (and "name=..." a named hierarchy).
      for (auto& o : proc::split(after[2], ',')) {
        bool controller = o != "rw" && o != "ro" && o.find('=') == std::string::npos;
        if (controller || o.rfind("name=", 0) == 0) h.controllers.insert(o);
      }
    } else {
      continue;
    }
    out.push_back(h);
  }
  return out;
}

LimitPlaces limit_places() {
  LimitPlaces p;
  auto all = mounted_hierarchies();
  for (auto& h : all) {
    if (h.v2) continue;
    if (h.controllers.count("cpu") && p.cpu.empty()) p.cpu = h.mount_point;
    if (h.controllers.count("memory") && p.memory.empty()) p.memory = h.mount_point;
  }
  if (!p.cpu.empty() || !p.memory.empty()) return p;
  for (auto& h : all) {
    if (!h.v2) continue;
    auto offered =
        proc::split_ws(proc::try_read_file(h.mount_point + "/cgroup.controllers").value_or(""));
    std::set<std::string> c(offered.begin(), offered.end());
    if (c.count("cpu") && c.count("memory")) return {h.mount_point, h.mount_point, true};
  }
  return p;
}

std::string own_group(const Hierarchy& h) {
  for (auto& line : proc::split(proc::read_file("/proc/self/cgroup"), '\n')) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string key = line.substr(first + 1, second - first - 1), path = line.substr(second + 1);
    if (h.v2 ? line.compare(0, first, "0") == 0 && key.empty() : !key.empty()) {
      if (h.v2) return path;
      std::set<std::string> names;
      for (auto& k : proc::split(key, ',')) names.insert(k);
      if (names == h.controllers) return path;
    }
  }
  return "/";
}

std::optional<double> cpu_quota(const std::string& dir, bool v2) {
  if (v2) {
    auto f = proc::split_ws(proc::try_read_file(dir + "/cpu.max").value_or("max"));
    if (f.size() < 2 || f[0] == "max") return std::nullopt;
    return static_cast<double>(proc::parse_u64(f[0])) / static_cast<double>(proc::parse_u64(f[1]));
  }
  const std::string quota_text = proc::try_read_file(dir + "/cpu.cfs_quota_us").value_or("-1");
  const std::string period_text =
      proc::try_read_file(dir + "/cpu.cfs_period_us").value_or("100000");
  auto quota = proc::trim(quota_text), period = proc::trim(period_text);
  if (quota.empty() || quota[0] == '-') return std::nullopt;
  return static_cast<double>(proc::parse_u64(quota)) / static_cast<double>(proc::parse_u64(period));
}

std::optional<uint64_t> memory_limit(const std::string& dir, bool v2) {
  const std::string raw =
      proc::try_read_file(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes")).value_or("max");
  auto text = proc::trim(raw);
  if (text.empty() || text == "max") return std::nullopt;
  uint64_t v = proc::parse_u64(text);
  if (v >= (1ull << 60)) return std::nullopt;  // v1's "unlimited" is a huge number
  return v;
}

}  // namespace ferry::cgroup
