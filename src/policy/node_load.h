// What a node has and what its tasks want: its capacity (its control group's CPU quota and
// memory limit, else the machine's CPUs and memory) and each task's CPU demand.
//
// A task's demand is the share of the last interval it was running or waiting to run
// (/proc/PID/task/*/schedstat: run time + run-queue wait, which includes the time its group was
// throttled), so a CPU-bound task wants one CPU however little it gets; a sleeping task wants
// what it used.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace ferry::policy {

struct Capacity {
  double cpus = 1;
  uint64_t memory_bytes = 0;
};
Capacity own_capacity();

// What a node counts for a task it has not sampled twice yet: a whole CPU, until measured.
inline constexpr double kPresumedDemand = 1.0;

class DemandSampler {
 public:
  // Intervals shorter than this are too coarse for schedstat's lumps (see sample()).
  static constexpr std::chrono::milliseconds kMinInterval{250};
  // Samples every task (id -> pid); tasks not given are forgotten. A task sampled less than
  // kMinInterval ago keeps its last sample.
  void sample(const std::map<std::string, pid_t>& pids);
  // The task's demand in CPUs; nullopt before two samples of it.
  std::optional<double> demand(const std::string& id) const;
  double total() const;

 private:
  struct Seen {
    pid_t pid = 0;
    uint64_t busy_ns = 0;  // run + wait, all threads
    std::chrono::steady_clock::time_point at{};
    std::optional<double> demand;
  };
  mutable std::mutex mu_;
  std::map<std::string, Seen> seen_;
};

}  // namespace ferry::policy
