// The source side of one migration, following the seed's protocol:
//   1. offer      the destination accepts or refuses, with a reason;
//   2. layout     the destination lays out the address space while the task still runs here
//                 (pre-copy: after a short stop that starts dirty tracking, then rounds of pages);
//   3. tasking    freeze and describe; the remote tasking message (PCB, memory layout, open
//                 files) goes first, then the pages the strategy sends while frozen (flushing:
//                 into the page store, and the message after them);
//   4. build      the destination rebuilds the task and holds it stopped (READY);
//   5. commit     from here ferry's death kills the frozen original (PTRACE_O_EXITKILL); the
//                 destination releases its copy; the source destroys its own, or, when pages
//                 still come from here (eager-dirty, copy-on-reference), serves them first.
// Before commit any failure lets the original run on here. If the outcome of Commit itself is
// unknown (the destination does not answer), the original stays frozen for as long as it takes
// the destination to say whether it released its copy: a task never runs in two places.
//
// What differs between strategies is asked of the strategy object (transfer/strategy.h); the
// session itself names none.
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cr/dump.h"
#include "ferry.grpc.pb.h"
#include "node/migration/node_context.h"
#include "transfer/page_server.h"
#include "transfer/page_stream.h"
#include "transfer/precopy.h"
#include "transfer/strategy.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {

class OutgoingMigration {
 public:
  using Emit = std::function<void(const rpc::MigrateEvent&)>;

  // Where the session is. Up to kReady a failure lets the original run on here; from
  // kCommitting on it never runs here again unless the destination says it released nothing.
  enum class State {
    kChecking,    // the request and the task, before anything is asked of the destination
    kOffered,     // the destination accepted; the task still runs here
    kFrozen,      // stopped and described; the tasking message and the pages go out
    kReady,       // the destination built the task and holds it
    kCommitting,  // Commit sent (or in doubt)
    kServing,     // runs at the destination; its pages still come from here
    kDone,        // the report went out
  };

  OutgoingMigration(NodeContext& node, const rpc::MigrateRequest& req, Emit emit);
  ~OutgoingMigration();
  OutgoingMigration(const OutgoingMigration&) = delete;
  OutgoingMigration& operator=(const OutgoingMigration&) = delete;

  // Runs the whole migration; the last event emitted is its report.
  void run();

 private:
  // --- before Commit (outgoing.cc): each throws an Error whose kind decides the way out.
  void check_request();
  void offer();
  void fill_offer(rpc::OfferRequest& offer);
  void open_page_stream();
  void prepare_at_destination(image::Image& prelim);
  void lay_out_early();  // strategies without rounds: the layout as /proc shows it, no stop
  void run_rounds();     // pre-copy
  void freeze();
  void send_frozen_pages();
  void flush_to_store(const cr::PageSelection& selection);
  void start_page_server();
  void check_map_meanwhile();
  void send_tasking(const image::Image& img);
  uint64_t drain_output();
  void hold_channels();
  void await_ready();

  // --- Commit and after (outgoing_commit.cc).
  bool commit(uint64_t log_offset);    // true: the task runs at the destination
  bool serve_after_commit();           // false: lost (the report went out)
  bool collect_destination_account();  // false: lost (the report went out)
  std::string serve_lazy_pages();      // outgoing_lazy.cc

  // --- ways out (outgoing_commit.cc).
  void fail_before_commit(const std::exception& e);
  std::optional<int> back_out();
  void give_up(rpc::MigrationOutcome outcome, const std::string& why, bool tell_destination);
  void task_ended_meanwhile(std::optional<int> code);
  std::optional<int> exit_status_if_ending();
  void abort_remote(const std::string& why);
  std::string stop_tasking(int wait_ms = 0);
  void stop_server();

  // --- the report.
  void finish(rpc::MigrationOutcome outcome, const std::string& reason = "");
  void progress(rpc::MigrationPhase phase, uint64_t sent, uint64_t total);
  void mark(const char* part);
  static const char* state_name(State s);
  rpc::MigrationStatusReply destination_status(int timeout_ms, bool* answered);

  // Whatever happens, the task's migrating state ends; signals queued meanwhile go where the
  // task is then: here, or (taken when the task left the table at commit) to the destination.
  // Declared first: it goes last, once the process is left alone.
  struct MigratingMark {
    MigratingMark(NodeContext& n, std::string task, pid_t p)
        : node(n), id(std::move(task)), pid(p) {}
    MigratingMark(const MigratingMark&) = delete;
    MigratingMark& operator=(const MigratingMark&) = delete;
    ~MigratingMark();
    NodeContext& node;
    const std::string id;
    const pid_t pid;
    std::string delivered_at;  // set to the destination on commit
    std::vector<int> taken;    // the signals held for it when it left this node's table
  };
  // Flushing: our image in the page store, until the destination has it.
  struct StoreDir {
    std::string path;
    bool keep = false;
    ~StoreDir();
  };

  NodeContext& node_;
  const rpc::MigrateRequest req_;
  const Emit emit_;
  const std::string id_;
  const std::string to_;
  std::optional<MigratingMark> migrating_;
  State state_ = State::kChecking;
  const transfer::Strategy* strategy_ = nullptr;
  rpc::MigrateReport rep_;
  Stopwatch total_;
  // Where the freeze went (for the log): checks, describe, pages, drain, restore, commit.
  std::vector<std::pair<const char*, double>> freeze_parts_;
  Stopwatch since_mark_;

  rpc::TaskInfo info_;
  pid_t pid_ = 0;
  std::string session_;  // once offered
  uint64_t rss_bytes_ = 0;
  transfer::Key key_{};
  transfer::Token token_{};
  std::string data_address_;
  std::optional<HeldPid> held_;

  StoreDir store_;
  std::unique_ptr<transfer::StreamSender> sender_;
  std::unique_ptr<transfer::PrecopySource> rounds_;
  std::optional<cr::FrozenProcess> frozen_;
  uint64_t frozen_from_ = 0;  // stream bytes before the freeze

  // The task's channel ends, held at the freeze until the migration ends one way or the other.
  bool channels_held_ = false;
  google::protobuf::RepeatedPtrField<rpc::ChannelHandoff> channel_handoffs_;

  rpc::TaskingRequest tasking_;
  grpc::ClientContext tasking_ctx_;
  rpc::TaskingReply ready_;
  std::future<grpc::Status> tasking_call_;
  std::future<void> map_checked_;  // the frozen task's map read again (check_map_meanwhile)

  // The lazy phase: the page server runs from the end of the frozen pages until the destination
  // has everything.
  std::unique_ptr<transfer::PageServer> server_;
  std::atomic<bool> server_stop_{false};
  std::future<std::string> server_done_;
};

}  // namespace ferry::node
