// The channel ends of the tasks on this node (one object per end: writer_end.h, reader_end.h),
// and the pipes that join a task's fds to them. A task's ends start with it (spawned here or
// arrived by migration), are held while it migrates, and go with it: the reader ends it leaves
// behind tell writers where it went. Ends that are done stay, for `ferry job show`'s counts.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <google/protobuf/repeated_field.h>

#include "node/channels/channel_link.h"
#include "node/channels/reader_end.h"
#include "node/channels/wire.h"
#include "node/channels/writer_end.h"

namespace ferry::node {

using ChannelEndSpecs = google::protobuf::RepeatedPtrField<rpc::ChannelEnd>;
using ChannelHandoffs = google::protobuf::RepeatedPtrField<rpc::ChannelHandoff>;

// The pipes of a task's channel ends (sockets, for channels of messages): the task's side of each
// by its fd number, and the side that stays with the node.
struct ChannelPipes {
  std::map<int, UniqueFd> task_side;
  std::map<int, UniqueFd> node_side;
  std::map<int, uint64_t> task_inodes;  // of the task's sockets
  // The inodes of the task's sockets and pipes, marked as ferry's (cr/provided.h): forgotten
  // with these pipes (a restore or a migration that failed) unless ChannelEnds::start() took
  // them over.
  std::vector<uint64_t> provided;

  ChannelPipes() = default;
  ChannelPipes(ChannelPipes&& other) noexcept { *this = std::move(other); }
  ChannelPipes& operator=(ChannelPipes&& other) noexcept;
  ~ChannelPipes() { forget(); }

 private:
  void forget();
};

class ChannelEnds {
 public:
  explicit ChannelEnds(ChannelLinks links) : links_(std::move(links)) {}

  static ChannelPipes make_pipes(const ChannelEndSpecs& ends);
  // Starts a task's ends on the node's side of its pipes; `handoffs` (of a task that arrived by
  // migration, or a restored task's reader ends with their recorded states as what they hold)
  // say where each goes on from.
  void start(const std::string& task_id, const ChannelEndSpecs& ends, ChannelPipes& pipes,
             const ChannelHandoffs* handoffs = nullptr);
  // Throws (refused) when an end of the task cannot move now.
  void check_movable(const std::string& task_id, pid_t pid);
  // A migration of the (frozen) task `pid`: its ends stop and give their state.
  std::vector<rpc::ChannelHandoff> hold(const std::string& task_id, pid_t pid);
  // The migration was given up: the ends go on here (the task `pid` still frozen).
  void resume(const std::string& task_id, pid_t pid);
  // The task runs at `node` now: its ends here go.
  void moved(const std::string& task_id, const std::string& node);
  // The task ended here: its sockets and pipes are no longer marked as ferry's (its ends stay,
  // for the job's figures).
  void task_ended(const std::string& task_id);
  // A writer's daemon opened a stream to one of the reader ends here.
  void serve(grpc::ServerContext& ctx, ChannelServerStream& stream);
  // A connection to this node's data listener opened with `token`: true when it is a channel
  // link a reader end here waits for (it takes the connection).
  bool link_arrived(const transfer::Token& token, UniqueFd& sock) {
    return rendezvous_.arrived(token, sock);
  }
  std::vector<rpc::ChannelEndStat> stats(const std::string& job);

  // Snapshots (issue 12): every reader end here calls `hook` at a marker (reader_end.h).
  // `active` says whether a snapshot is still on here: a recording that came with a task's ends
  // for one that ended meanwhile is dropped.
  using Active = std::function<bool(uint64_t marker)>;
  void set_snapshot_hooks(ReaderEnd::MarkerHook hook, Active active);
  // Whether a reader end of the task came with a recording of `marker`: the task was recorded
  // for that snapshot at the node it came from.
  bool carries_recording(const std::string& task_id, uint64_t marker);
  // The (frozen) task `pid` is recorded for snapshot `marker`: its writer ends send the marker
  // after what they took (`unsent`: what its pipes still hold, the task's), its reader ends start
  // recording. `ended`: reader ends whose channel had ended already (their recording is complete
  // at once).
  std::vector<rpc::ChannelCut> cut(const std::string& task_id, pid_t pid, uint64_t marker,
                                   std::vector<std::shared_ptr<ReaderEnd>>* ended,
                                   std::vector<WriterEnd::Unsent>* unsent);
  // A snapshot is over: what its reader ends here still record is dropped.
  void drop_recordings(uint64_t marker);
  // The reader's end of a channel here (also one that moved away: it says where), else null.
  std::shared_ptr<ReaderEnd> reader(const std::string& job, uint32_t channel);

 private:
  const ChannelLinks links_;
  LinkRendezvous rendezvous_;
  std::mutex mu_;
  struct Ends {
    std::vector<std::shared_ptr<WriterEnd>> writers;
    std::vector<std::shared_ptr<ReaderEnd>> readers;
    std::vector<uint64_t> provided;  // the inodes of the task's sockets and pipes
  };
  std::map<std::string, Ends> by_task_;
  std::map<EndKey, std::shared_ptr<ReaderEnd>> readers_;  // includes those that moved away
  ReaderEnd::MarkerHook marker_hook_;
  Active active_;
  Ends ends_of(const std::string& task_id);  // (a copy: used without the lock)
  // After start(): the recordings that came with the task's ends for snapshots no longer on.
  void drop_stale_recordings(const std::string& task_id);
};

}  // namespace ferry::node
