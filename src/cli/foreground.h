// Waiting for a restored process in the foreground, the way a shell waits for a job: signals sent
// to ferry are passed on, the terminal is handed over when the process leads its own group, and
// ferry exits with the process's status (128+N for a death by signal N).
#pragma once

#include <sys/types.h>

namespace ferry::cli {

// Call before the process exists so that no forwarded signal is lost in between.
void block_forwarded_signals();
int wait_foreground(pid_t pid);

}  // namespace ferry::cli
