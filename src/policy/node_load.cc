#include "policy/node_load.h"

#include <unistd.h>

#include <algorithm>

#include "util/cgroup_mounts.h"
#include "util/proc.h"

namespace ferry::policy {
namespace {

struct Busy {
  uint64_t ns = 0;  // run + run-queue wait, all threads
  size_t threads = 0;
};

// nullopt when the process is gone.
std::optional<Busy> busy_of(pid_t pid) {
  const std::string dir = proc::path(pid, "task");
  Busy b;
  try {
    for (auto& tid : proc::list_dir(dir)) {
      auto f = proc::split_ws(proc::try_read_file(dir + "/" + tid + "/schedstat").value_or(""));
      if (f.size() < 2) continue;
      b.ns += proc::parse_u64(f[0]) + proc::parse_u64(f[1]);
      b.threads++;
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (b.threads == 0) return std::nullopt;
  return b;
}

uint64_t mem_total() {
  auto m = proc::read_keyed("/proc/meminfo");
  auto it = m.find("MemTotal");
  return it == m.end() ? 0 : proc::parse_u64(proc::split_ws(it->second).at(0)) * 1024;
}

}  // namespace

Capacity own_capacity() {
  Capacity c;
  c.cpus = static_cast<double>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  c.memory_bytes = mem_total();
  auto places = cgroup::limit_places();
  for (auto& h : cgroup::mounted_hierarchies()) {
    if (h.mount_point != places.cpu && h.mount_point != places.memory) continue;
    const std::string dir = h.mount_point + cgroup::own_group(h);
    if (h.mount_point == places.cpu) {
      if (auto q = cgroup::cpu_quota(dir, h.v2)) c.cpus = std::min(c.cpus, *q);
      // v1: the quota is on the tasks' group, not on ferryd's (cli/node_cgroups.cc says why).
      if (!h.v2)
        if (auto q = cgroup::cpu_quota(dir + "/work", false)) c.cpus = std::min(c.cpus, *q);
    }
    if (h.mount_point == places.memory)
      if (auto m = cgroup::memory_limit(dir, h.v2)) c.memory_bytes = std::min(c.memory_bytes, *m);
  }
  return c;
}

void DemandSampler::sample(const std::map<std::string, pid_t>& pids) {
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, Seen> next;
  for (auto& [id, pid] : pids) {
    auto busy = busy_of(pid);
    if (!busy) continue;
    Seen s{pid, busy->ns, now, std::nullopt};
    std::lock_guard<std::mutex> lock(mu_);
    auto it = seen_.find(id);
    if (it != seen_.end() && it->second.pid == pid && busy->ns >= it->second.busy_ns) {
      const auto dt = now - it->second.at;
      // The kernel adds a wait to schedstat when it ends, in one lump: over a short interval
      // one lump reads as several CPUs. Such an interval is not a sample; the last one stands.
      if (dt < kMinInterval) {
        next[id] = it->second;
        continue;
      }
      double d = static_cast<double>(busy->ns - it->second.busy_ns) /
                 std::chrono::duration<double, std::nano>(dt).count();
      d = std::min(d, static_cast<double>(busy->threads));  // a thread wants one CPU at most
      // Smoothed, so one odd interval does not move a task.
      s.demand = it->second.demand ? 0.5 * *it->second.demand + 0.5 * d : d;
    }
    next[id] = s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  seen_ = std::move(next);
}

std::optional<double> DemandSampler::demand(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = seen_.find(id);
  if (it == seen_.end()) return std::nullopt;
  return it->second.demand;
}

double DemandSampler::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  double sum = 0;
  for (auto& [id, s] : seen_) sum += s.demand.value_or(0);
  return sum;
}

}  // namespace ferry::policy
