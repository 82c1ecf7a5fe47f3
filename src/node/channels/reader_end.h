// The reading end of a channel, at the daemon of the node its task runs on. The task reads from
// a pipe whose write end is here. The writer's daemon streams the channel's items to it; each is
// taken once, in order (a resend after a move is recognised by its sequence number), written
// into the pipe, and acknowledged once it is wholly there. The pipe's own flow control holds
// the stream: while the task does not read, nothing more is taken.
//
// A migration of the task holds the end: the stream stops (even in the middle of an item: how
// much of it is in the pipe is part of the state), the bytes in the frozen task's pipe travel in
// its image, and the state goes along (hold()). Once the task runs elsewhere (moved()), a writer
// that comes here is told where.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

#include <grpcpp/server_context.h>
#include <grpcpp/support/sync_stream.h>

#include "channel/channel_stream.h"
#include "ferry.grpc.pb.h"
#include "util/fd.h"

namespace ferry::node {

using ChannelServerStream = grpc::ServerReaderWriter<rpc::ChannelReply, rpc::ChannelFrame>;

class ReaderEnd {
 public:
  ReaderEnd(rpc::ChannelEnd spec, std::string task_id, std::string node, UniqueFd pipe_write,
            const rpc::ChannelHandoff* from);
  ReaderEnd(const ReaderEnd&) = delete;
  ReaderEnd& operator=(const ReaderEnd&) = delete;

  // Serves one writer's stream (after its first frame) until it ends or breaks, this end is
  // held, or another stream takes over.
  void serve(grpc::ServerContext& ctx, ChannelServerStream& stream, const std::string& writer_node);

  // A writer end on this node is served without a stream: it is admitted (the reply a stream
  // would get first; with RESUME, the generation its deliveries carry), delivers items itself,
  // and leaves. `stop` breaks it off (a hold here, or a writer that takes over); it is called with
  // this end's lock held, so it must not wait for anything that needs it.
  enum class Delivery { kDone, kStop, kGone };
  rpc::ChannelReply admit(const std::string& writer_node, std::function<void()> stop,
                          uint64_t* generation);
  // One item into the pipe, wholly, or as much as there is room for until the writer is stopped.
  Delivery deliver(uint64_t seq, bool end, bool marker, std::string_view data,
                   uint64_t generation);
  void leave(uint64_t generation);
  // The admitted writer stops on its own (its task's migration holds it): deliver() returns.
  void interrupt(uint64_t generation);
  rpc::ChannelHandoff hold();
  void resume();
  // The task runs at `node` now: writers are sent there.
  void moved(const std::string& node);
  rpc::ChannelEndStat stat();

 private:
  void wake();

  const rpc::ChannelEnd spec_;
  const std::string task_id_;
  const std::string node_;
  UniqueFd wake_;  // eventfd: a stream waiting for room in the pipe must look at the flags

  std::mutex mu_;
  std::condition_variable cv_;
  UniqueFd pipe_;
  channel::ChannelReceiver receiver_;
  uint64_t skip_ = 0;  // bytes of the item receiver_.next_seq() already in the pipe
  uint64_t bytes_delivered_ = 0;
  bool holding_ = false;
  bool gone_ = false;
  std::string moved_to_;
  std::string writer_node_;
  uint64_t generation_ = 0;  // of the writer being served
  bool serving_ = false;
  uint64_t serving_generation_ = 0;
  std::function<void()> stop_serving_;
};

}  // namespace ferry::node
