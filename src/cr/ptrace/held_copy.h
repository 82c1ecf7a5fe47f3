// A copy of a process that ferry holds while it writes the copy's memory out (a snapshot's
// recording: the process itself runs on at once, the copy keeps its memory as it was). The copy
// is made by Tracee::fork_held_copy(), never runs, and ends with this object: killed and reaped
// by ferry (its tracer), through a pidfd taken while it could not yet have gone.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "util/fd.h"

namespace ferry::cr {

class HeldCopy {
 public:
  explicit HeldCopy(pid_t pid);
  ~HeldCopy();
  HeldCopy(const HeldCopy&) = delete;
  HeldCopy& operator=(const HeldCopy&) = delete;

  pid_t pid() const { return pid_; }
  // Memory of ferry's that the copy inherited from the process (the scratch memory the fork was
  // run from): not the process's, so it goes before the copy is described.
  struct Mapping {
    uint64_t addr = 0, len = 0;
  };
  Mapping inherited_scratch;

 private:
  pid_t pid_;
  UniqueFd pidfd_;
};

}  // namespace ferry::cr
