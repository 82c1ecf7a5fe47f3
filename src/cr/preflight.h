// What ferry refuses, decided before the process is frozen (and checked again once it is, for
// what could change in between). A refusal names the resource and leaves the process untouched.
#pragma once

#include <sys/types.h>

#include <vector>

#include "cr/resources/memory_map.h"

namespace ferry::cr {

// Throws ferry::Error "cannot checkpoint process N: <reason>" when ferry cannot capture it.
// allow_ferry_wp: memory write-protected by ferry's own dirty tracking (pre-copy) is fine.
// vmas: where to keep the memory regions read for the check (the dump may reuse them).
void check_supported(pid_t pid, bool allow_ferry_wp = false, std::vector<VmaInfo>* vmas = nullptr);
// The checks that matter again once the process is stopped (threads, children).
void recheck_stopped(pid_t pid);

}  // namespace ferry::cr
