// What a node reports about its load every second.
#pragma once

#include <cstdint>

namespace ferry::node {

struct LoadSample {
  double cpu_percent = 0;       // busy share of all CPUs since the previous sample
  double load_avg = 0;          // 1-minute load average
  uint64_t mem_free_bytes = 0;  // MemAvailable
  uint64_t mem_total_bytes = 0;
  unsigned cpus = 1;
};

class LoadSampler {
 public:
  LoadSample sample();

 private:
  uint64_t last_busy_ = 0, last_total_ = 0;
};

}  // namespace ferry::node
