// Checkpoint of one process: freeze, dump every resource into an image directory, then kill the
// process or let it run on. Any failure before the image is complete leaves the process running
// exactly as it was.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace ferry::cr {

struct CheckpointOptions {
  std::string images_dir;
  bool leave_running = false;
  bool sync = false;  // fsync the image before reporting success
};

struct CheckpointResult {
  uint64_t image_bytes = 0;
  uint64_t pages_written = 0;
  uint64_t pages_skipped_zero = 0;
  uint64_t pages_from_files = 0;
  uint64_t freeze_us = 0;  // from stop to kill/resume
  uint64_t total_us = 0;
  uint64_t remote_syscalls = 0;
};

CheckpointResult checkpoint(pid_t pid, const CheckpointOptions& options);

}  // namespace ferry::cr
