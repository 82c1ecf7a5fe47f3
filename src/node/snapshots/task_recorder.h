// Recording one task for a snapshot (issue 12) without stopping it for longer than a fork: the
// task is frozen, its channel ends cut (what its ends took goes ahead of the marker, what its
// pipes still hold is its own, what it has not read starts the channels' recorded states), a copy
// of it is forked, and it runs on. The copy's
// memory is written to the snapshot store afterwards, on the recorder's own thread (the copy's
// tracer, which must outlive it), and the copy ends.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ferry.pb.h"
#include "node/channels/channel_ends.h"

namespace ferry::node {

struct TaskToRecord {
  std::string task_id;
  std::string name;  // as its job names it
  pid_t pid = 0;
  std::vector<rpc::ChannelEnd> ends;
  uint64_t marker = 0;
  std::string image_dir;  // empty, ferry's own
  // Where what it wrote into channel N that its end had not taken goes (ID/channels/N.unsent).
  std::function<std::string(uint32_t channel)> unsent_path;
  std::string node;
  // It ended during its pause: its exit status, which ferry's wait took (nobody else has it).
  std::function<void(int code)> ended;
};

// What the pause gave: the cuts of the task's ends, and the reader ends whose channel had
// ended already (their recording is complete).
struct TaskCut {
  std::vector<rpc::ChannelCut> cuts;
  std::vector<std::shared_ptr<ReaderEnd>> ended;
  double pause_ms = 0;
};

// Starts recording on a new thread (returned: the caller joins it; `finished` is set as it ends).
// `paused` is fulfilled once the task runs again (or holds why it could not be recorded: then
// nothing was cut). `written` is called on that thread once the image is complete: the report, or
// why it failed.
std::thread record_task(TaskToRecord task, ChannelEnds& channels, std::promise<TaskCut> paused,
                        std::function<void(rpc::SnapshotTaskReport, std::string failure)> written,
                        std::shared_ptr<std::atomic<bool>> finished);

}  // namespace ferry::node
