// The destination side of one migration, from the accepted offer to the task running here (or
// the session's end). Its phases are the calls the source makes (prepare, tasking, commit,
// abort) and the page stream it opens (receive); its state is rpc::MigrationState, which the
// source may ask for at any time (MigrationStatus), also to settle a Commit in doubt:
//
//   offered -> building -> receiving -> received -> ready -> running
//   pre-copy: offered -> preparing -> rounds -> building -> ...
//   early layout: offered -> preparing -> prepared -> building -> ...
//   pages after Commit: ready -> pulling -> running (or lost)
//   ends: aborted, failed, lost.
//
// Every ptrace request on the process being built goes through the session's worker thread
// (ptrace only listens to the thread that attached); page data is placed by the thread that
// receives the stream.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cr/builder.h"
#include "cr/resources/cgroups.h"
#include "cr/restore.h"
#include "ferry.pb.h"
#include "node/migration/node_context.h"
#include "transfer/lazy_pager.h"
#include "transfer/lazy_sources.h"
#include "transfer/page_stream.h"
#include "transfer/strategy.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/worker.h"

namespace ferry::node {

class IncomingMigration : public std::enable_shared_from_this<IncomingMigration> {
 public:
  // An offer this node accepted: the session waits for the source's next step.
  IncomingMigration(NodeContext& node, const rpc::OfferRequest& offer,
                    const transfer::Strategy& strategy, cr::CgroupRebase cgroups);
  ~IncomingMigration();
  IncomingMigration(const IncomingMigration&) = delete;
  IncomingMigration& operator=(const IncomingMigration&) = delete;

  const std::string& id() const { return id_; }
  const rpc::TaskInfo& task() const { return task_; }
  const transfer::Token& token() const { return token_; }
  std::chrono::steady_clock::time_point created() const { return created_; }
  rpc::MigrationState state();
  rpc::MigrationStatusReply status();
  // Until the task's pages are all here, or will never come (the session ended otherwise);
  // false when they are still coming at the deadline.
  bool await_pages(std::chrono::steady_clock::time_point deadline);
  // The name under which ferry-init keeps a copy of a lazily filled task's userfaultfd.
  std::string lazy_memory_name() const;

  // --- the source's calls (incoming.cc)
  // The first description of the running task; the address space is laid out from it.
  rpc::TaskingReply prepare(const rpc::TaskingRequest& req);
  // The remote tasking message: the task is built and held, once its frozen pages are here.
  rpc::TaskingReply tasking(const rpc::TaskingRequest& req);
  // Releases the held copy: the task runs here.
  rpc::CommitReply commit(const rpc::CommitRequest& req);
  // Stops the receiving thread (if any) and drops the builder and the built copy; a task whose
  // pages are still arriving dies with the pager. A task that runs is left alone.
  void tear_down(rpc::MigrationState final_state);

  // --- the page stream (incoming_stream.cc)
  // Whether `token` opens this session's stream (once only).
  bool claim_stream(const transfer::Token& token);
  // Whether `token` is the source's reconnection of this session's lazy phase; takes `sock`.
  bool take_resumed_stream(const transfer::Token& token, UniqueFd& sock);
  // Reads the page stream to its end (and through the lazy phase).
  void receive(UniqueFd sock);

 private:
  rpc::TaskingReply not_ready(rpc::TaskingReply& reply, const std::string& why);
  cr::BuildOptions build_options(bool lazy);
  // What the frozen task had not read yet from each channel it reads goes back into its pipe,
  // and what it had written into each channel it writes and its end had not taken yet into its
  // new pipe (`handoffs`, the source's ends).
  void refill_channel_pipes(const ChannelHandoffs& handoffs);
  // tasking(): its parts.
  std::string take_tasking_turn(const rpc::TaskingRequest& req, bool* prepared);
  void build(const rpc::TaskingRequest& req, bool prepared);
  void open_page_store(const rpc::TaskingRequest& req);
  std::string await_frozen_pages();
  void start_pager();
  void start_filler();
  // receive(): its parts.
  void receive_pages(transfer::StreamReceiver& rx);
  void run_lazy_phase(transfer::StreamReceiver& rx);
  void end_lazy_phase(const std::string& error);
  // The lazy phase's page stream broke: waits for the source's new connection (true, installed
  // in rx) until the source is known to have lost the task or lazy_timeout passed (false).
  bool wait_for_source(transfer::StreamReceiver& rx, const std::string& why);

  NodeContext& node_;
  const std::string id_;
  const rpc::TaskInfo task_;
  const std::string source_node_;  // where the pages come from
  const transfer::Strategy& strategy_;
  const cr::CgroupRebase cgroups_;  // the source ferryd's groups and ours
  transfer::Key key_{};
  const transfer::Token token_;
  uint64_t limit_ = 0;  // how much page data may arrive
  const std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();
  std::unique_ptr<Worker> worker_ = std::make_unique<Worker>();

  std::mutex mu_;
  std::condition_variable cv_;
  rpc::MigrationState state_ = rpc::MIGRATION_OFFERED;
  std::string error_;
  bool token_used_ = false;
  bool receiving_ = false;  // a thread is reading the page stream
  int stream_fd_ = -1;      // its socket, to break it off
  image::Image prelim_;     // the first description (pre-copy: the layout until relayout)
  image::Image image_;      // the tasking message's description
  std::unique_ptr<cr::ProcessBuilder> builder_;
  std::optional<cr::RestoredProcess> built_;
  double stream_ms_ = 0;  // first frame received to last placed
  // pre-copy
  uint32_t rounds_received_ = 0;
  bool last_round_seen_ = false;  // the stream paused after the last round, for relayout
  // pages after Commit
  bool awaiting_resume_ = false;     // the lazy phase's connection broke: the source reconnects
  std::optional<UniqueFd> resumed_;  // the source's new connection, once it came
  uint32_t resumed_generation_ = 0;
  std::unique_ptr<transfer::LazyPager> pager_;
  std::unique_ptr<transfer::StoreLazySource> store_;
  std::string store_dir_;
  std::thread filler_;  // flushing: loads the store after Commit
  std::optional<Stopwatch> since_commit_;
  double last_page_ms_ = 0;
  uint64_t lazy_bytes_ = 0, lazy_pages_ = 0, lazy_faults_ = 0;
  UniqueFd output_read_;  // the relay's end of the new output pipe
  UniqueFd output_write_;
  ChannelPipes channel_pipes_;  // the task's channel ends, joined to this node's
  ControlPair control_;         // its control descriptor, served by this node
};

}  // namespace ferry::node
