// The writing end of a channel, at the daemon of the node its task runs on. The task writes into
// a pipe whose read end is here: a pump takes what it wrote into the channel's send queue (never
// more than the channel's capacity: when the queue is full the pump stops reading, the pipe
// fills, and the task's write blocks, which is the flow control), and a sender streams the queue
// to the reader's daemon, which acknowledges what it put into the reader's pipe; only then does
// an item leave the queue. When the reader's end is on this node too, the sender puts the items
// into its pipe itself (no stream). When the stream breaks, or the reader's end has moved, the
// sender finds the reader again (the old place names the new one; failing that, the job's home
// finds the reader's task) and resends from what the reader says it has.
//
// A migration of the task holds the end: the pump and the sender stop, what the frozen task's
// pipe still holds is taken out of it, and both go along (hold()): the queue as it is, and what
// was in the pipe back into the task's new pipe before it runs (put_back_untaken()), so that a
// writer moving while its reader does not read never makes the queue grow past its capacity. If
// the migration is given up, the end resumes here, what it took back in the task's pipe.
//
// A snapshot's cut leaves what the pipe (or socket) holds there too, and puts the marker into
// the queue at once: what the task wrote that its end has not taken is the task's own state (a
// copy of it is recorded with the task, Unsent, and goes back into its pipe at a restore), not
// the channel's, so a marker never waits for the queue to take a pipe's worth past its capacity.
//
// A channel of messages starts in a socket (message_socket.h), not a pipe: the pump takes one
// message at a time, whole, once the queue has room for it (until then it stays in the socket).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>

#include "channel/channel_stream.h"
#include "ferry.grpc.pb.h"
#include "node/channels/channel_link.h"
#include "node/channels/reader_end.h"
#include "node/channels/wake_fd.h"
#include "util/fd.h"

namespace ferry::node {

struct ChannelLinks {
  std::string node;  // this node
  // This node's data listener, where the writers of other nodes open channel links ("" for none:
  // the items go on the ChannelStream).
  std::string link_address;
  // The stub of a node (throws for a node this one does not know).
  std::function<rpc::Node::Stub&(const std::string&)> stub;
  // Where the other end of a channel runs now, as its job's home and its task's home know it:
  // "" when not known yet, nullopt when its task has ended.
  std::function<std::optional<std::string>(const rpc::ChannelEnd&)> locate_peer;
  // The reader's end of a channel when it is (or was) on this node, else null.
  std::function<std::shared_ptr<ReaderEnd>(const std::string& job, uint32_t channel)> local_reader;
  // A test's fault: a send on a link lets its items be acknowledged (and taken out of the queue)
  // before the sender goes on, as a fast reader may at any time.
  bool acks_first = false;
  // How this node tags a link's frames (Faults::frame_format): a link only between equals.
  uint32_t frame_format = 0;
};

class WriterEnd {
 public:
  // `from`: the end's state when it arrived here with its task (nullptr for a new end).
  // `task_inode`: a channel of messages, the task's end of its socket pair (0 for a pipe).
  WriterEnd(rpc::ChannelEnd spec, std::string task_id, UniqueFd pipe_read, uint64_t task_inode,
            ChannelLinks links, const rpc::ChannelHandoff* from);
  ~WriterEnd();
  WriterEnd(const WriterEnd&) = delete;
  WriterEnd& operator=(const WriterEnd&) = delete;

  void start();
  // Stops the end for a migration of its (frozen) task; everything the task wrote is in the
  // returned state.
  rpc::ChannelHandoff hold();
  // The migration was given up: the end goes on here, what hold() took from the pipe of the
  // (still frozen) task `pid` back in it.
  void resume(pid_t pid);
  // At the task's destination, before it runs: what hold() took from the pipe (or socket) at its
  // source goes back in, first. `task_side`: the task's end of its new pipe (or socket).
  static void put_back_untaken(const rpc::ChannelHandoff& from, int task_side);
  // What the frozen task had written that its end had not taken when a snapshot cut it (its pipe,
  // or socket, held it): part of the task's recorded state, after the marker in the channel.
  struct Unsent {
    uint32_t channel = 0;
    bool messages = false;
    UniqueFd copy;  // bytes: a pipe holding a copy (tee: nothing read in the pause)
    std::vector<std::string> taken;  // messages (taken out to be counted, and sent again)
    // The bytes (in one piece) or the messages: read from the copy once the task runs on.
    std::vector<std::string> items();
  };
  // A snapshot records the (frozen) task `pid`: the marker goes after everything its end has
  // taken (unless it closed its end: the end is the marker then), what its pipe holds into
  // `unsent`. Returns what it had written (what the end took) and what it had not sent.
  rpc::ChannelCut cut(uint64_t marker, pid_t pid, Unsent* unsent = nullptr);
  // At a restore, before the task runs: what it had not sent goes into its new pipe (or socket)
  // first, as though it had just written it. `task_side`: the task's end of it.
  static void put_into_task_side(const std::vector<std::string_view>& pieces, int task_side,
                                 const std::string& what);
  rpc::ChannelEndStat stat();

 private:
  static constexpr size_t kFrameBytes = 256 << 10;  // the most data one frame carries
  // kBroken: a stream that was flowing broke (its reader's end was held by a migration, or it
  // took over another stream): the place is asked again at once.
  enum class StreamEnd { kRetry, kBroken, kMoved, kDone };
  void pump();
  void pump_messages();
  // With mu_ held, the task frozen: what its pipe or socket holds (all it wrote), taken out in
  // order; `*end`: the end of the stream came after it (the task closed its end).
  std::vector<std::string> take_from_pipe(bool* end);
  // With mu_ held: what the frozen task's pipe or socket still holds, into the queue.
  void take_the_rest();
  // With mu_ held: the same, out of the pipe but not into the queue (untaken_). At the end of
  // the stream (the task closed its end) it goes into the queue, with the end.
  void take_untaken();
  void put_back_into_task(pid_t pid);  // (resume()'s, with mu_ held)
  // With mu_ held: `data`, taken from the pipe, into the queue past its capacity.
  void append_taken(std::string_view data);
  // With mu_ held: the reader's answer (RESUME or ACK): what it has taken, and what it holds.
  void take_answer(const rpc::ChannelReply& r);
  rpc::ChannelCut cut_bytes(Unsent& unsent);
  rpc::ChannelCut cut_messages(pid_t pid, Unsent& unsent);
  void send();
  StreamEnd stream_to(const std::string& node);
  StreamEnd stream_items(grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream,
                         uint64_t from);
  StreamEnd send_on_link(grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream,
                         LinkSender& link, uint64_t from);
  // With mu_ held (by `lock`): what is not sent yet goes on the live link.
  void push_on_link(std::unique_lock<std::mutex>& lock);
  // With mu_ held (by `lock`): the reader's end is told where the latest cut's marker is, on the
  // stream beside the link; false when the stream broke.
  bool tell_marker_position(grpc::ClientReaderWriter<rpc::ChannelFrame, rpc::ChannelReply>& stream,
                            std::unique_lock<std::mutex>& lock);
  // With mu_ held: whether push_on_link() sends from the calling thread now (a live link nobody
  // is sending on).
  bool sends_here() const { return link_ && !link_sending_ && !holding_ && !stream_broken_; }
  // With mu_ held, after items were appended: the threads waiting for them are woken, unless
  // the caller sends them itself (then nobody else has anything to do with them).
  void announce_items() {
    if (!sends_here()) cv_.notify_all();
  }
  StreamEnd deliver_here(const std::shared_ptr<ReaderEnd>& reader);
  StreamEnd deliver_items(ReaderEnd& reader, uint64_t generation, uint64_t from);
  // The first answer of a reader (by stream or here): MOVED, GONE, NOT_HERE, or go on (nullopt).
  std::optional<StreamEnd> settle_first(const rpc::ChannelReply& r, const std::string& node);
  void reader_gone();  // with mu_ held
  void stop_threads();
  void wake();
  // The pump's own, when the task's pipe (or socket) has nothing more to give: it and the wakeup
  // are closed (a finished end stays for its counts; its descriptors need not).
  void close_pipe();

  const rpc::ChannelEnd spec_;
  const std::string task_id_;
  const ChannelLinks links_;
  const bool messages_;
  UniqueFd pipe_;
  const uint64_t task_inode_;
  WakeFd wake_;  // the pump must look at the flags

  std::mutex read_mu_;  // the pump's read and append (before mu_)
  std::mutex mu_;
  std::condition_variable cv_;
  channel::ChannelSendQueue queue_;
  std::vector<std::string> untaken_;  // hold()'s, from the pipe (or socket), in order
  // Where the latest cut's marker goes (bytes written before it; a channel of messages: messages),
  // and whether the reader's end has to be told (ReaderEnd::take_ahead_through()).
  uint64_t marker_position_ = 0;
  bool marker_news_ = false;
  std::string peer_node_;
  bool holding_ = false;
  bool gone_ = false;
  bool stream_broken_ = false;
  bool link_failed_ = false;             // (the sender's own: the last link could not be opened)
  LinkSender* link_ = nullptr;           // the live link (send_on_link() owns it)
  uint64_t link_next_ = 0;               // the first item not sent on it yet
  bool link_sending_ = false;            // a thread sends on it now
  grpc::ClientContext* live_ = nullptr;  // the stream being sent on, to cancel it
  std::shared_ptr<ReaderEnd> local_;      // the reader's end here being delivered to
  uint64_t local_generation_ = 0;
  bool local_stopped_ = false;            // the reader's end broke us off
  std::thread pump_, sender_;
};

}  // namespace ferry::node
