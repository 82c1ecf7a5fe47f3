// What ferry refuses, decided before the process is frozen (and checked again once it is, for
// what could change in between). A refusal names the resource and leaves the process untouched.
#pragma once

#include <sys/types.h>

namespace ferry::cr {

// Throws ferry::Error "cannot checkpoint process N: <reason>" when ferry cannot capture it.
void check_supported(pid_t pid);
// The checks that matter again once the process is stopped (threads, children).
void recheck_stopped(pid_t pid);

}  // namespace ferry::cr
