// The reading end of a channel, at the daemon of the node its task runs on. The task reads from
// a pipe whose write end is here. The writer's daemon streams the channel's items to it; each is
// taken once, in order (a resend after a move is recognised by its sequence number), written
// into the pipe, and acknowledged once it is wholly there. The pipe's own flow control holds
// the stream: while the task does not read, nothing more is taken.
//
// A migration of the task holds the end: the stream stops (even in the middle of an item: how
// much of it is in the pipe is part of the state), the bytes in the frozen task's pipe travel in
// its image, and the state goes along (hold()), with the snapshots' recordings still on (they go
// on at the next node until their markers come there). Once the task runs elsewhere (moved()),
// a writer that comes here is told where.
//
// A channel of messages ends in a socket (message_socket.h), not a pipe: an item goes in whole
// or waits; at a hold, the messages the frozen task has not read are taken out of its socket and
// travel in the state (`unread`), to go back first wherever it runs on (or here, if the
// migration is given up).
//
// A snapshot's marker must not wait for the task to read (a task that does not read would hold
// the snapshot for ever): the writer's end says where its marker is (take_ahead_through()), and
// until this end has delivered that far, what finds no room in the task's pipe (or socket) is
// taken ahead into `unread` -- no more than the writer had queued when it was cut, so within the
// channel's capacity with what this end held already -- and a thread of its own (the drainer) puts
// it into the pipe as the task reads, before anything that comes after it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/server_context.h>
#include <grpcpp/support/sync_stream.h>

#include "channel/channel_stream.h"
#include "ferry.grpc.pb.h"
#include "node/channels/channel_link.h"
#include "node/channels/pipe_reads.h"
#include "node/channels/unread_pieces.h"
#include "node/channels/wake_fd.h"
#include "util/fd.h"

namespace ferry::node {

using ChannelServerStream = grpc::ServerReaderWriter<rpc::ChannelReply, rpc::ChannelFrame>;

class ReaderEnd {
 public:
  // `task_inode`: of the task's end, for a channel of messages.
  ReaderEnd(rpc::ChannelEnd spec, std::string task_id, std::string node, UniqueFd pipe_write,
            uint64_t task_inode, const rpc::ChannelHandoff* from);
  ~ReaderEnd();
  ReaderEnd(const ReaderEnd&) = delete;
  ReaderEnd& operator=(const ReaderEnd&) = delete;

  // Serves one writer's stream (after its first frame, `hello`) until it ends or breaks, this
  // end is held, or another stream takes over. With `link`, the items come on a data link of
  // their own (channel_link.h) that the writer opens at `link->address`.
  struct LinkOffer {
    LinkRendezvous* rendezvous;
    std::string address;
    uint32_t frame_format;  // how this node tags the link's frames (the writer's own)
  };
  void serve(grpc::ServerContext& ctx, ChannelServerStream& stream, const rpc::ChannelFrame& hello,
             const LinkOffer* link);

  // A writer end on this node is served without a stream: it is admitted (the reply a stream
  // would get first; with RESUME, the generation its deliveries carry), delivers items itself,
  // and leaves. `stop` breaks it off (a hold here, or a writer that takes over); it is called with
  // this end's lock held, so it must not wait for anything that needs it.
  enum class Delivery { kDone, kStop, kGone };
  rpc::ChannelReply admit(const std::string& writer_node, std::function<void()> stop,
                          uint64_t* generation);
  // One item into the pipe, wholly, or as much as there is room for until the writer is stopped.
  // `marker`: the snapshot id of a marker item (never reaches the task), else kNoMarker.
  // `in_socket`: the link the data is still in, to be spliced from (LinkItem::in_socket).
  static constexpr uint64_t kNoMarker = 0;
  Delivery deliver(uint64_t seq, bool end, uint64_t marker, std::string_view data,
                   uint64_t generation, LinkReceiver* in_socket = nullptr);
  void leave(uint64_t generation);
  // The admitted writer stops on its own (its task's migration holds it): deliver() returns.
  void interrupt(uint64_t generation);
  // Throws (refused) when the task `pid` cannot move now: its channel of messages ended and it
  // has not read the last ones (they could not go back, were the move given up).
  void check_movable(pid_t pid);
  // `pid`: the frozen task's (its unread messages are taken out of its socket).
  rpc::ChannelHandoff hold(pid_t pid);
  void resume();
  // The task runs at `node` now: writers are sent there.
  void moved(const std::string& node);
  rpc::ChannelEndStat stat();

  // Snapshots (issue 12). The hook is called, without this end's lock, when a marker is due
  // (nothing after it is delivered before it returns: it records the task first), and with
  // kChannelEnded when the channel ends or its task goes while a recording is on. It returns
  // false to leave the marker in the channel, only while a migration holds this end: the marker
  // then comes again wherever the task runs on (it was not acknowledged).
  static constexpr uint64_t kChannelEnded = ~0ull;
  using MarkerHook = std::function<bool(ReaderEnd&, uint64_t marker)>;
  void set_marker_hook(MarkerHook hook);
  bool holding();  // a migration of its task holds this end
  // The (frozen) task `pid` is recorded for snapshot `marker`: what it had read is the cut, and
  // the channel's recorded state starts with what it has not read and goes on with what is
  // delivered until the marker. `ended`: the channel had ended already (nothing more comes).
  rpc::ChannelCut start_recording(uint64_t marker, pid_t pid, bool* ended);
  // A piece of what waits in this end to go into the task's pipe or socket (unread_pieces.h).
  using Piece = UnreadPiece;
  struct Recording {
    uint64_t marker = 0;
    std::vector<std::string> items;  // messages, or pieces of bytes
    // What waited in the end when the task was recorded: it goes into `items` at `waiting_at`,
    // copied once the task runs on (finish_recording(), hold()).
    std::vector<Piece> waiting;
    size_t waiting_at = 0;
    uint64_t bytes = 0;
    std::string failure;  // its task went before the marker came
    bool carried = false;     // begun at another node (the task was recorded there, then moved)
    std::string recorded_at;  // the node that recorded the task
  };
  // The recording of `marker`, taken out (nullopt when there is none).
  std::optional<Recording> finish_recording(uint64_t marker);
  std::vector<uint64_t> recordings();  // the markers recorded now
  // Whether this end came with a recording of `marker` from the node its task was recorded at.
  bool carries_recording(uint64_t marker);
  // The writer's end cut the channel: its marker comes once `position` bytes (a channel of
  // messages: messages) were written. What comes before it is taken ahead if the task's pipe
  // (or socket) has no room for it.
  void take_ahead_through(uint64_t position);
  // Bytes this end holds outside its task's pipe (what it tells its writer: see
  // ChannelSendQueue::set_held_by_reader).
  uint64_t held_bytes();
  const rpc::ChannelEnd& spec() const { return spec_; }
  const std::string& task_id() const { return task_id_; }

 private:
  void wake();
  void close_pipe();  // the task's pipe (or socket) is done with, and the wakeup with it
  // serve()'s two ways, after the first answer (RESUME).
  void serve_stream(ChannelServerStream& stream, uint64_t generation);
  void serve_link(grpc::ServerContext& ctx, ChannelServerStream& stream, rpc::ChannelReply first,
                  const transfer::Key& key, const LinkOffer& link, uint64_t generation);
  // With mu_ held: the item `seq` is wholly in the pipe (or is a marker, or the end).
  Delivery accept_item(uint64_t seq, bool end, bool marker);
  // Under mu_: whether the item can be delivered now (nullopt), or what deliver() returns; sets
  // hook_for when the marker hook must run first.
  std::optional<Delivery> check_turn(uint64_t seq, bool end, uint64_t marker_id,
                                     uint64_t generation, uint64_t& hook_for);
  // deliver()'s wait for room in the pipe: for a free slot (POLLOUT); or, the pipe full by its
  // bytes, for the task's next read, its leaving, or a timer that doubles. `reads_often`: this
  // look follows a read seen soon after the one before; `reads_on`: it left little room, and the
  // next look comes after a moment, the reads not watched.
  struct RoomWait {
    bool full_by_bytes = false, read_seen = false, task_left = false;
    bool reads_often = false, reads_on = false;
    long look_us = 0;
    int reads_fd = -1;
  };
  void note_full(RoomWait& room);  // with mu_ held: the pipe is full by its bytes
  // Unlocked; false when the poll failed. `max_ms`: the longest wait (-1: until something comes).
  bool wait_for_room(RoomWait& room, int max_ms = -1);
  void look_again(RoomWait& room);     // with mu_ held, after a wait: what it saw
  // With mu_ held: whether the room a read just made is left for a moment (reads_on).
  bool refill_later(RoomWait& room, size_t room_bytes, size_t left);
  void record(std::string_view data);  // with mu_ held: delivered while recordings are on
  Delivery task_gone();                // with mu_ held: the task closed its end or ended
  // With mu_ held: a message (or a marker, or the end) into the task's socket, whole, or nothing
  // yet (wait for room); the unread ones of an earlier place go first.
  std::optional<Delivery> put_message(uint64_t seq, bool end, bool marker, std::string_view data);
  void put_unread();
  // With mu_ held: one message into the task's socket; false when there is no room (or no task).
  bool put_one(std::string_view message);
  static Piece piece_of(std::string data);
  static void fill_in(Recording& r);  // its `waiting` pieces copied into its items
  // With mu_ held: the first `count` of `taken` (messages just taken out of the task's socket)
  // back into it, in their order, before those in unread_; what does not fit joins unread_.
  void put_back_taken(const std::vector<std::string>& taken, size_t count);
  void refuse_if_ended_with_unread(pid_t pid);  // with mu_ held

  // Taking ahead (reader_end_ahead.cc). With mu_ held: whether `size` bytes of an item that find
  // no room may be taken ahead now; the rest of item `seq` (`data`, what is not in the pipe)
  // taken ahead.
  bool taking_ahead(size_t size) const;
  static size_t pipe_room_bytes(int pipe, int size);  // its size less the bytes it holds
  Delivery take_ahead(uint64_t seq, std::string_view data);
  // With mu_ held: what waits in unread_ into the pipe or socket, as much as there is room for.
  // A pipe: false when its task is gone (then task_gone() was called).
  bool put_unread_bytes(RoomWait& room);
  void put_unread_any(RoomWait& room);
  void start_drainer();  // with mu_ held: unless it runs, or the end is held or closing
  void drain();          // the drainer: until unread_ is empty, the end held, or the task gone

  const rpc::ChannelEnd spec_;
  const std::string task_id_;
  const std::string node_;
  const bool messages_;
  const uint64_t task_inode_;
  WakeFd wake_;  // a stream waiting for room in the pipe must look at the flags

  std::mutex mu_;
  std::condition_variable cv_;
  UniqueFd pipe_;
  const int pipe_size_;             // (F_GETPIPE_SZ, once: it does not change)
  std::chrono::steady_clock::time_point last_read_seen_{};  // (under mu_; RoomWait::reads_often)
  bool spliced_ = false;            // pages went into the pipe by splice (slots of more than 4 KiB)
  std::optional<PipeReads> reads_;  // once the pipe was full by its bytes: the task's reads
  channel::ChannelReceiver receiver_;
  uint64_t skip_ = 0;  // bytes of the item receiver_.next_seq() already in the pipe
  uint64_t bytes_delivered_ = 0;
  uint64_t messages_delivered_ = 0;  // (writes, in a channel of bytes)
  // To go into the pipe or socket before anything else: messages the task had not read when it
  // moved, and what was taken ahead (pieces of bytes, or messages).
  UnreadPieces unread_;
  uint64_t ahead_through_ = 0;  // the position of the writer's latest marker (take_ahead_through)
  std::thread drainer_;
  bool draining_ = false;
  bool closing_ = false;  // (the end is being destroyed)
  bool holding_ = false;
  bool gone_ = false;
  std::string moved_to_;
  std::string writer_node_;
  uint64_t generation_ = 0;  // of the writer being served
  bool serving_ = false;
  uint64_t serving_generation_ = 0;
  std::function<void()> stop_serving_;
  MarkerHook marker_hook_;
  uint64_t hooked_ = 0;  // 1 + the seq of the last marker the hook ran for
  bool end_hooked_ = false;
  std::vector<Recording> recordings_;
};

}  // namespace ferry::node
