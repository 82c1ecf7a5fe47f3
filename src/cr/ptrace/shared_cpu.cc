#include "cr/ptrace/shared_cpu.h"

#include <errno.h>

#include <cstring>

#include <spdlog/spdlog.h>

namespace ferry::cr {
namespace {

// The CPU both may run on: `preferred` when both allow it, else the lowest they share (-1: none).
int common_cpu(const cpu_set_t& a, const cpu_set_t& b, int preferred) {
  if (preferred >= 0 && CPU_ISSET(preferred, &a) && CPU_ISSET(preferred, &b)) return preferred;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &a) && CPU_ISSET(cpu, &b)) return cpu;
  return -1;
}

}  // namespace

SharedCpu::SharedCpu(pid_t pid) : pid_(pid) {
  if (::sched_getaffinity(pid_, sizeof process_mask_, &process_mask_) != 0 ||
      ::sched_getaffinity(0, sizeof thread_mask_, &thread_mask_) != 0)
    return;
  int cpu = common_cpu(process_mask_, thread_mask_, ::sched_getcpu());
  if (cpu < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  if (::sched_setaffinity(0, sizeof one, &one) != 0) return;
  if (::sched_setaffinity(pid_, sizeof one, &one) != 0) {
    ::sched_setaffinity(0, sizeof thread_mask_, &thread_mask_);
    return;
  }
  active_ = true;
}

void SharedCpu::stop() {
  if (!active_) return;
  active_ = false;
  // (A process that has ended meanwhile has no mask to put back: ESRCH is fine.)
  if (::sched_setaffinity(pid_, sizeof process_mask_, &process_mask_) != 0 && errno != ESRCH)
    spdlog::warn("cannot give process {} its CPU mask back: {}", pid_, std::strerror(errno));
  ::sched_setaffinity(0, sizeof thread_mask_, &thread_mask_);
}

void SharedCpu::process_ended() {
  if (!active_) return;
  active_ = false;
  ::sched_setaffinity(0, sizeof thread_mask_, &thread_mask_);
}

SharedCpu::~SharedCpu() {
  stop();
}

}  // namespace ferry::cr
