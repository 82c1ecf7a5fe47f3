// A node's part in the snapshots of jobs (issue 12): it knows the snapshots in progress (the
// coordinator tells every node first), records each task of theirs that runs here once — when
// the coordinator asks (the initiator) or when the first marker reaches one of its reader ends —
// and records each channel's state at its reader's end until that channel's marker comes. A task
// that migrates meanwhile is recorded before it moves (its channels' recordings still on go
// along with its ends), or left to the node it moves to (with the markers its ends have not
// taken: docs/snapshots.md, "Migrations during a snapshot"). What
// it recorded goes to the coordinator as parts, from a thread of its own (never on a channel's
// way).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ferry.grpc.pb.h"
#include "node/channels/channel_ends.h"
#include "node/snapshots/task_recorder.h"
#include "node/tasks.h"

namespace ferry::node {

class SnapshotParticipant {
 public:
  struct Env {
    std::string node;
    std::string default_store;
    ChannelEnds* channels = nullptr;
    std::function<std::optional<LocalTask>(const std::string& task_id)> task;
    std::function<rpc::Node::Stub&(const std::string& node)> stub;
    // While ferryd traces a task, its reaper must not wait for it (it would take the stops), and
    // no migration of it begins (LocalTasks::begin_recording): false when it migrates.
    std::function<bool(const std::string& task_id, pid_t)> begin_recording;
    std::function<void(const std::string& task_id, pid_t)> end_recording;
    // The task ended during its pause, and its exit status is the one ferry's wait took.
    std::function<void(const std::string& task_id, int code)> ended;
    // The task's pages are still coming after a lazy migration (copy-on-reference, flushing):
    // its memory is registered with the pager's userfaultfd until the last one is in place.
    std::function<bool(const std::string& task_id)> pages_coming;
    // Until they came (or never will); false when they are still coming at the deadline.
    std::function<bool(const std::string& task_id, std::chrono::steady_clock::time_point)>
        await_pages;
  };
  explicit SnapshotParticipant(Env env);
  ~SnapshotParticipant();
  SnapshotParticipant(const SnapshotParticipant&) = delete;
  SnapshotParticipant& operator=(const SnapshotParticipant&) = delete;

  void begin(const rpc::SnapshotBeginRequest& b);
  void end(uint64_t marker);
  // Records the task here for the snapshot once; returns when it runs again (at once when it was
  // recorded already, or the snapshot is not known here). A task that migrates is recorded once
  // the migration ends, unless `leave_it()` says its next node may record it instead: then
  // nothing is recorded here and it returns false.
  bool record(uint64_t marker, const std::string& task_id, const std::function<bool()>& leave_it);
  // ReaderEnd's hook: a marker (or the end of its channel) is due at `end`; false leaves the
  // marker in the channel for the node the task moves to (a migration holds the end).
  bool on_marker(ReaderEnd& end, uint64_t marker);
  // Whether the snapshot of `marker` is on here.
  bool active(uint64_t marker) { return known(marker).has_value(); }
  // The state of a channel whose reader this node recorded, from the node where its recording
  // completed (it went along with the reader's end): kept here, reported from here.
  void keep_channel(const rpc::RecordedChannelRequest& state);

 private:
  // The task's turn to be recorded by this node (one snapshot at a time), held until destroyed.
  class RecordingTurn;
  enum class TaskState { kRecording, kRecorded, kFailed };
  struct Active {
    rpc::SnapshotBeginRequest begin;
    std::map<std::string, TaskState> tasks;
  };
  std::string store_of(const rpc::SnapshotBeginRequest& b) const;
  void await_pages(const std::string& task_id);
  using TaskCut = node::TaskCut;
  // The snapshot's begin when this thread is to record the task (no other has or does); `left`:
  // another records it now, and this one leaves it (see record()).
  std::optional<rpc::SnapshotBeginRequest> claim(uint64_t marker, const std::string& task_id,
                                                 const std::function<bool()>& leave_it, bool* left);
  std::optional<TaskCut> record_unless_it_moves(const rpc::SnapshotBeginRequest& b,
                                                const std::string& task_id, std::string* name,
                                                const std::function<bool()>& leave_it);
  TaskCut record_here(const rpc::SnapshotBeginRequest& b, const std::string& task_id,
                      std::string* name);
  void send_cut(const rpc::SnapshotBeginRequest& b, const std::string& task_id,
                const std::string& name, const TaskCut& cut);
  // The recording of `marker` at `end` is complete: its state to the store of the node that
  // recorded the task (here, or handed over), a part to the coordinator.
  void finish_channel(ReaderEnd& end, uint64_t marker);
  void keep(const rpc::SnapshotBeginRequest& b, uint32_t channel, bool messages,
            const std::vector<std::string>& items, uint64_t bytes);
  void send(const std::string& coordinator, rpc::SnapshotPartRequest part);
  // Calls to other nodes go from the sender thread, in order (never on a channel's way).
  void post(std::function<void()> call);
  void fail(const rpc::SnapshotBeginRequest& b, const std::string& why);
  void send_loop();
  std::optional<rpc::SnapshotBeginRequest> known(uint64_t marker);

  const Env env_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Active> active_;
  std::set<std::string> freezing_;  // tasks held by a recording now (one snapshot at a time)
  struct Recorder {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> finished;
  };
  std::vector<Recorder> recorders_;
  void join_finished();  // with mu_ held
  std::deque<std::function<void()>> outbox_;
  bool stopping_ = false;
  std::thread sender_;
};

}  // namespace ferry::node
