// Restore of one process from an image directory: a helper process forked from ferry is turned,
// one resource at a time, into the image's process, then released. Until that release nothing
// of the image has run; any failure kills the helper and changes nothing else.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cr {

struct RestoreOptions {
  std::string images_dir;
  bool same_pid = false;     // a taken original PID is an error instead of a new PID
  bool verify_pages = true;  // check pages.img block hashes (in parallel with the restore)
};

struct RestoreResult {
  pid_t pid = -1;  // the running process; a child of the caller
  pid_t original_pid = -1;
  uint64_t restore_us = 0;
  uint64_t remote_syscalls = 0;
  std::vector<std::string> notes;  // things the user should hear about
};

RestoreResult restore(const RestoreOptions& options);

// The CPU facts an image must match: xstate size and enabled features (XCR0).
size_t local_xstate_size();
uint64_t local_xcr0();

}  // namespace ferry::cr
