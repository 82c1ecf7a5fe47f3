// Monotonic time for measurements and deadlines, and the wall clock for records.
#pragma once

#include <time.h>

#include <cstdint>

namespace ferry {

inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Wall-clock time, in milliseconds since the epoch (for records people read).
inline uint64_t now_unix_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000ull + static_cast<uint64_t>(ts.tv_nsec) / 1000000ull;
}

class Stopwatch {
 public:
  Stopwatch() : start_(monotonic_ns()) {}
  uint64_t elapsed_ns() const { return monotonic_ns() - start_; }
  uint64_t elapsed_us() const { return elapsed_ns() / 1000; }
  double elapsed_ms() const { return static_cast<double>(elapsed_ns()) / 1e6; }
  void restart() { start_ = monotonic_ns(); }

 private:
  uint64_t start_;
};

}  // namespace ferry
