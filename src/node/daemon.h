// ferryd: one node of a ferry cluster. It runs tasks, relays their output to their home node,
// keeps the home records of the tasks started here, reports its load to its peers, and plays
// either side of a migration. The gRPC services (control_service.cc, node_service.cc) are thin
// layers over the methods here.
#pragma once

#include <sys/eventfd.h>

#include <atomic>
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

#include "cr/cgroups.h"
#include "cr/builder.h"
#include "cr/restore.h"
#include "ferry.grpc.pb.h"
#include "node/commit_journal.h"
#include "node/config.h"
#include "node/home.h"
#include "node/init_link.h"
#include "node/load.h"
#include "node/logstore.h"
#include "node/peers.h"
#include "node/relay.h"
#include "node/tasks.h"
#include "transfer/lazy_pager.h"
#include "transfer/lazy_sources.h"
#include "transfer/page_server.h"
#include "transfer/page_stream.h"
#include "transfer/strategy.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/worker.h"

namespace ferry::node {

// Faults a test can ask a node to commit (FERRY_TEST_FAULTS, comma separated).
struct Faults {
  bool die_after_commit = false;         // source: exit right after sending Commit
  bool fail_restore = false;             // destination: the restore fails
  bool kill_task_before_freeze = false;  // source: the task ends between offer and freeze
  bool slow_stream = false;              // source: the page stream pauses between frames
  bool lose_commit_reply = false;        // destination: commits, then is unreachable for 3 s
  static Faults from_env();
};

// A migration arriving here (destination side). Every ptrace request on the process being
// built goes through its worker thread (ptrace only listens to the thread that attached); page
// data is placed by the thread that receives the stream.
//
// States: offered -> building -> receiving -> received -> ready -> running, or, with pages that
// come after Commit, ready -> pulling -> running. Pre-copy: offered -> preparing -> rounds ->
// (last round received) -> building -> receiving -> ... Ends: aborted, failed, lost (the task
// died because its pages could not come).
struct IncomingMigration {
  ~IncomingMigration();
  // Stops the receiving thread (if any) and drops the builder and the built copy; a task whose
  // pages are still arriving dies with the pager.
  void tear_down(const std::string& state);

  std::string id;
  rpc::TaskInfo task;
  const transfer::Strategy* strategy = &transfer::default_strategy();
  transfer::Key key{};
  transfer::Token token{};
  uint64_t limit = 0;
  std::unique_ptr<Worker> worker = std::make_unique<Worker>();
  std::mutex mu;
  std::condition_variable cv;
  std::string state = "offered";
  std::string error;
  bool token_used = false;
  bool receiving = false;  // a thread is reading the page stream
  int stream_fd = -1;      // its socket, to break it off
  image::Image prelim;     // pre-copy: the first description (the builder's layout until relayout)
  image::Image image;      // the tasking message's description
  std::unique_ptr<cr::ProcessBuilder> builder;
  std::optional<cr::RestoredProcess> built;
  double stream_ms = 0;  // first frame received to last placed
  // pre-copy
  uint32_t rounds_received = 0;
  bool last_round_seen = false;  // the stream paused after the last round, for relayout
  // pages after Commit
  cr::CgroupRebase cgroups;           // the source ferryd's groups and ours
  std::string source_node;            // where the pages come from
  bool awaiting_resume = false;       // the lazy phase's connection broke: the source reconnects
  std::optional<UniqueFd> resumed;    // the source's new connection, once it came
  uint32_t resumed_generation = 0;
  std::unique_ptr<transfer::LazyPager> pager;
  std::vector<transfer::Range> lazy_ranges;
  std::unique_ptr<transfer::StoreLazySource> store;
  std::string store_dir;
  std::thread filler;  // flushing: loads the store after Commit
  std::optional<Stopwatch> since_commit;
  double last_page_ms = 0;
  uint64_t lazy_bytes = 0, lazy_pages = 0, lazy_faults = 0;
  UniqueFd output_read;  // the relay's end of the new output pipe
  UniqueFd output_write;
  std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();
};

// The name under which ferry-init keeps a copy of a lazily filled task's userfaultfd.
std::string lazy_memory_name(const IncomingMigration& m);

class Daemon {
 public:
  explicit Daemon(NodeConfig cfg);
  ~Daemon();
  // Serves until SIGTERM or SIGINT.
  int run();

  const NodeConfig& cfg() const { return cfg_; }
  const std::string& name() const { return cfg_.name; }

  // --- tasks -----------------------------------------------------------------------------
  rpc::TaskInfo run_task(const rpc::RunRequest& req);  // here or, per req.node, elsewhere
  rpc::TaskInfo run_here(const rpc::RunRequest& req);
  std::vector<rpc::TaskInfo> tasks_here();  // running here + ended tasks homed here
  rpc::PsReply ps();
  rpc::NodesReply nodes();
  rpc::TaskInfo locate(const std::string& id);  // asks the task's home
  rpc::KillReply kill(const std::string& id, int sig);
  rpc::KillReply kill_here(const std::string& id, int sig);
  rpc::WaitReply wait(const std::string& id, int timeout_ms);
  // Streams the task's log (from its home); write() returns false when the reader went away.
  void read_log(const rpc::LogsRequest& req,
                const std::function<bool(const rpc::LogChunk&)>& write);

  // --- home side ---------------------------------------------------------------------------
  HomeRegistry& home() { return home_; }
  LogStore& logs() { return logs_; }
  void task_moved(const rpc::TaskInfo& t);
  void task_exited(const std::string& id, int code, const std::string& node, uint64_t epoch,
                   const std::string& reason = "", bool lost = false);
  void record_report(const rpc::LoadReport& r) { peers_.record_report(r); }

  // --- migration ---------------------------------------------------------------------------
  // Runs the migration where the task is (forwarding when it is elsewhere); emit() gets
  // progress and the final report.
  void migrate(const rpc::MigrateRequest& req,
               const std::function<void(const rpc::MigrateEvent&)>& emit);
  rpc::OfferReply offer(const rpc::OfferRequest& req);
  rpc::TaskingReply tasking(const rpc::TaskingRequest& req);
  rpc::TaskingReply prepare(const rpc::TaskingRequest& req);
  rpc::CommitReply commit(const rpc::CommitRequest& req);
  void abort(const rpc::AbortRequest& req);
  rpc::MigrationStatusReply migration_status(const std::string& session);

 private:
  std::string home_of(const std::string& id) const;
  uint64_t deliver_output(const std::string& task, const std::string& home, uint64_t offset,
                          const std::string& data);
  void notify_home(std::function<bool()> send);
  rpc::LoadReport make_report();
  void report_loop();
  void reap_loop();
  void notify_loop();
  void data_accept_loop();
  void session_reaper();
  void on_exit(const std::string& id, int code);
  // The exit of a process orphaned while no ferryd was its parent, from ferry-init.
  void on_orphan_exit(const OrphanExit& e);
  // The tasks an earlier ferryd of this node left in its table: adopted when they still run,
  // reported ended (with the status ferry-init kept) or lost otherwise.
  void adopt_tasks();
  // Returns the exit (of `exits`) it took care of.
  std::optional<OrphanExit> adopt_task(const rpc::LocalTaskRecord& r,
                                       std::map<std::string, InitLink::KeptPipe>& kept,
                                       const std::vector<OrphanExit>& exits);
  // A task whose migration was past Commit when its ferryd died: asks the destination. nullopt:
  // not released there (the task is ours again); "": it runs there; else why it is lost.
  std::optional<std::string> settle_commit(const rpc::LocalTaskRecord& r);
  // Tells the task's home that it ended (or is lost), from here.
  void report_end(const rpc::TaskInfo& t, int code, const std::string& reason, bool lost);
  void migrate_out(const rpc::MigrateRequest& req,
                   const std::function<void(const rpc::MigrateEvent&)>& emit);
  // The report of a migration whose source went away before it said how it ended.
  rpc::MigrateReport interrupted_report(const rpc::MigrateRequest& req, const rpc::TaskInfo& before,
                                        const std::string& error,
                                        const std::optional<Stopwatch>& frozen,
                                        const std::string& session);
  // The source's lazy phase: serves pages until the destination has them all (returns "") or
  // they cannot come any more (returns why). A broken page stream is reconnected while both
  // ends live, for up to lazy_timeout.
  std::string serve_lazy_pages(transfer::PageServer& server, transfer::StreamSender& sender,
                               const std::atomic<bool>& stop, const std::string& to,
                               const std::string& session, const std::string& data_address,
                               const transfer::Key& key);
  void receive_stream(UniqueFd sock);
  // Pieces of the destination side (migrate_in.cc).
  cr::BuildOptions build_options(IncomingMigration& m, bool lazy);
  void receive_pages(IncomingMigration& m, transfer::StreamReceiver& rx);
  void start_lazy_phase(IncomingMigration& m);
  void end_lazy_phase(IncomingMigration& m, const std::string& error);
  // The lazy phase's page stream broke: waits for the source's new connection (true, installed
  // in rx) until the source is known to have lost the task or lazy_timeout passed (false).
  bool wait_for_source(IncomingMigration& m, transfer::StreamReceiver& rx, const std::string& why);
  // A new connection from the source of a migration whose lazy phase goes on.
  bool take_resumed_stream(const transfer::Token& token, UniqueFd& sock);
  std::shared_ptr<IncomingMigration> session(const std::string& id);

  NodeConfig cfg_;
  Faults faults_;
  InitLink init_;  // ferry-init, which outlives this ferryd (inactive without one)
  LocalPipeKeeper local_keeper_;
  Peers peers_;
  HomeRegistry home_;
  LogStore logs_;
  LocalTasks tasks_;
  CommitJournal journal_;
  OutputRelay relay_;
  LoadSampler sampler_;
  std::mutex load_mu_;
  LoadSample last_load_;

  std::mutex sessions_mu_;
  std::map<std::string, std::shared_ptr<IncomingMigration>> sessions_;
  // How sessions that were dropped ended ("running", "lost", "aborted") and their lazy phase's
  // figures, so that a source in doubt about its Commit, or waiting for the account of the lazy
  // phase, still gets the truth long after (bounded in number and age).
  struct Decided {
    rpc::MigrationStatusReply status;
    std::chrono::steady_clock::time_point when;
  };
  std::map<std::string, Decided> decided_;
  std::atomic<int64_t> unreachable_until_ms_{0};  // lose-commit-reply fault
  // Outgoing migrations whose page server still holds the original (MigrationStatus: serving).
  std::set<std::string> serving_;

  // Exits ferry-init reports, handled by the reaper thread (never on the link's own thread,
  // which must stay free to carry ferry-init's answers).
  std::mutex orphan_mu_;
  std::deque<OrphanExit> orphan_exits_;
  UniqueFd orphan_wake_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  void queue_orphan_exit(const OrphanExit& e);

  std::mutex notify_mu_;
  std::condition_variable notify_cv_;
  std::deque<std::function<bool()>> notify_queue_;

  UniqueFd data_listener_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

}  // namespace ferry::node
