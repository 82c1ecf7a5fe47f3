// One CPU for a held process and the ferry thread that drives it, while ferry runs many calls in
// it (describing a frozen process, building a restored one).
//
// Why: every injected call is a round trip (ferry resumes the process, the process stops again).
// When the two sit on different CPUs, each leg wakes the other CPU, and on a VM an idle vCPU
// takes 50-200 µs to answer; a thread that spins for the stop instead keeps its own CPU busy,
// so the woken process waits behind it. On one CPU a leg is a context switch (~5-10 µs): a
// 64 MiB snapshot's description fell from 7.5 to ~2 ms (bench/RESULTS.md).
//
// The process's own CPU mask is put back before it runs again (stop(), or the destructor).
// Were ferry to die in between, the process would run on with the one CPU: slower, never lost.
#pragma once

#include <sched.h>
#include <sys/types.h>

namespace ferry::cr {

class SharedCpu {
 public:
  // Pins the calling thread and process `pid` (stopped, held by this thread) to one CPU both
  // may use: the thread's current one when it can. When they share none, or the kernel refuses,
  // nothing changes (active() is false) and ferry works as before, only slower.
  explicit SharedCpu(pid_t pid);
  ~SharedCpu();
  SharedCpu(const SharedCpu&) = delete;
  SharedCpu& operator=(const SharedCpu&) = delete;

  bool active() const { return active_; }
  // The process's and the thread's masks back as they were.
  void stop();
  // The process has ended (and may be reaped: its number could name another process soon):
  // only the thread's mask goes back.
  void process_ended();

 private:
  pid_t pid_;
  bool active_ = false;
  cpu_set_t process_mask_{};
  cpu_set_t thread_mask_{};
};

}  // namespace ferry::cr
