// A job file (YAML): the tasks of a job and the channels between them. What `ferry job` reads;
// everything in it is checked before anything starts, and a problem is named with its line.
//
//   tasks:
//     - name: gen                 # unique within the job
//       node: node1               # optional: where it starts (default: the node asked)
//       command: [python3, gen.py, "1000"]
//       labels: [gpu=1]           # optional: labels the node must carry
//   channels:
//     - from: gen:1               # gen writes into its fd 1 ...
//       to: zip:0                 # ... and zip reads that from its fd 0
//       mode: message             # optional: bytes (default) or message (boundaries kept)
//       capacity: 4MiB            # optional: what the channel may hold before the writer waits
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ferry::job {

struct TaskSpec {
  std::string name;
  std::string node;  // "" for the node asked
  std::vector<std::string> command;
  std::map<std::string, std::string> labels;
  int line = 0;
};

// One end of a channel: a task's file descriptor.
struct ChannelEnd {
  std::string task;
  int fd = -1;
};

enum class ChannelMode { kBytes, kMessage };

struct ChannelSpec {
  ChannelEnd from;  // the writer
  ChannelEnd to;    // the reader
  ChannelMode mode = ChannelMode::kBytes;
  uint64_t capacity_bytes = 0;
  int line = 0;
};

struct JobSpec {
  std::vector<TaskSpec> tasks;
  std::vector<ChannelSpec> channels;
};

// What a channel holds by default, and the bounds of `capacity`.
constexpr uint64_t kDefaultCapacity = 4ull << 20;
constexpr uint64_t kMinCapacity = 4096;
constexpr uint64_t kMaxCapacity = 1ull << 30;
// The most tasks and channels a job may have, and the highest fd a channel end may use.
constexpr size_t kMaxTasks = 256;
constexpr size_t kMaxChannels = 4096;
constexpr int kMaxFd = 1023;

// Parses and checks a job file's text; `origin` names it in errors ("FILE:LINE: reason").
// Throws Error (bad input).
JobSpec parse_job(const std::string& text, const std::string& origin);

// Reads FILE (a regular file of at most 1 MiB) and parses it.
JobSpec load_job_file(const std::string& path);

const char* mode_name(ChannelMode mode);

}  // namespace ferry::job
