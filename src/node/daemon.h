// ferryd: one node of a ferry cluster. It runs tasks, relays their output to their home node,
// keeps the home records of the tasks started here, reports its load to its peers, and keeps
// the registries that migration sessions work with (node/migration/: each side of a migration
// is a session object with its phases as methods). The gRPC services (services.cc) are thin
// layers over the methods here and over the sessions.
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

#include "ferry.grpc.pb.h"
#include "node/channels/channel_ends.h"
#include "node/commit_journal.h"
#include "node/config.h"
#include "node/control_descriptors.h"
#include "node/faults.h"
#include "node/home.h"
#include "node/init_link.h"
#include "node/jobs.h"
#include "node/load.h"
#include "node/logstore.h"
#include "node/migration/incoming_sessions.h"
#include "node/migration/node_context.h"
#include "node/peers.h"
#include "node/relay.h"
#include "node/snapshots/coordinator.h"
#include "node/snapshots/participant.h"
#include "node/task_groups.h"
#include "node/tasks.h"
#include "policy/events.h"
#include "policy/node_load.h"
#include "policy/starter.h"
#include "util/fd.h"

namespace ferry::node {

class Daemon : public policy::StarterHost {
 public:
  explicit Daemon(NodeConfig cfg);
  ~Daemon() override;
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
  void record_report(const rpc::LoadReport& r) {
    // A peer that just came (or came back) hears from this node at once, not at its next tick:
    // this node's report to it may have found it not yet listening (a second for a cluster's
    // up, where the nodes start one after the other).
    if (peers_.record_report(r)) report_now();
    if (r.has_policy()) adopt_policy(r.policy());
  }

  // --- migration -----------------------------------------------------------------------------
  // Runs the migration where the task is (forwarding when it is elsewhere); emit() gets
  // progress and the final report.
  void migrate(const rpc::MigrateRequest& req,
               const std::function<void(const rpc::MigrateEvent&)>& emit);
  // The node's admission of a task offered to it (admission.cc): load, memory, labels, CPU
  // features, files, addresses and control groups; an accepted offer opens a session.
  rpc::OfferReply offer(const rpc::OfferRequest& req);
  // The migrations arriving here (their sessions take the source's further calls).
  IncomingSessions& incoming() { return incoming_; }

  // --- jobs and channels (daemon_jobs.cc) ----------------------------------------------------
  // Starts a job's tasks where they go, with their channels joined; this node is its home.
  rpc::JobInfo run_job(const rpc::RunJobRequest& req);
  // The jobs whose id or name is `ref` ("" for all): this node's, or every node's.
  std::vector<rpc::JobInfo> jobs(const std::string& ref, bool local_only);
  std::vector<rpc::ChannelEndStat> channel_stats(const std::string& job, bool local_only);
  // A task's id from what a command names it by: its id, or JOB/NAME.
  std::string resolve(const std::string& ref);
  ChannelEnds& channels() { return channels_; }

  // --- snapshots (daemon_snapshots.cc) -------------------------------------------------------
  // Takes a snapshot of a job wherever its home is.
  rpc::SnapshotReport snapshot(const rpc::SnapshotRequest& req);
  SnapshotCoordinator& coordinator() { return coordinator_; }
  SnapshotParticipant& snapshot_part() { return snapshots_; }
  // Every node's reports (or this node's).
  std::vector<rpc::SnapshotReport> snapshots(const rpc::SnapshotsRequest& req);
  void remove_snapshot(const rpc::SnapshotRemoveRequest& req);
  // Brings a snapshot back as a new job homed here (daemon_restore.cc); each task is rebuilt by
  // restore_here() on the node that holds its image.
  rpc::JobInfo restore_snapshot(const rpc::SnapshotRestoreRequest& req);
  rpc::TaskInfo restore_here(const rpc::RestoreTaskRequest& req);

  // --- the Starter's policy (daemon_policy.cc) -------------------------------------------------
  rpc::PolicySettings policy_set(const rpc::PolicySetRequest& req);  // here and on every peer
  rpc::PolicySettings policy_show();
  // Takes settings newer than this node's (from a peer); whether they were.
  bool adopt_policy(const rpc::PolicySettings& s);
  std::vector<rpc::PolicyEvent> events(const rpc::EventsRequest& req);
  // Drains (or undrains) a node: this one, or forwarded to it.
  rpc::DrainReply drain(const rpc::DrainRequest& req);

  // policy::StarterHost
  rpc::PolicySettings policy_settings() override;
  void refresh_demand(uint64_t max_age_ms) override;
  policy::NodeView self_view() override;
  std::vector<policy::NodeView> peer_views(std::map<std::string, uint64_t>* reported) override;
  std::vector<policy::TaskView> local_tasks() override;
  std::vector<policy::Traffic> traffic() override;
  uint64_t task_signature(const std::string& id) override;
  // A migration run here to its end: its report (a refusal's reason when it throws).
  rpc::MigrateReport move(const rpc::MigrateRequest& req) override;

 private:
  std::string home_of(const std::string& id) const;
  uint64_t deliver_output(const std::string& task, const std::string& home, uint64_t offset,
                          const std::string& data);
  void notify_home(std::function<bool()> send);
  // Tells the home of a task that arrived here where it runs now.
  void announce_arrival(const rpc::TaskInfo& t);
  rpc::LoadReport make_report();
  void fill_policy_report(rpc::LoadReport& r);
  void report_now() { report_soon_ = true; }  // a report goes out now, not at the next tick
  void load_policy_state();
  // Availability on: a node told to stop moves its tasks off first (within the policy's
  // deadline) and stays draining when it comes back, until undrained.
  void drain_before_stopping();
  void sample_demand();
  // Why the node's policy state refuses an offered task ("" when it does not).
  std::string policy_refusal(const rpc::OfferRequest& req);
  // Why the task is no longer here to be moved ("" while it is): its process ended (or is a
  // zombie), or it left the table (ended and reaped, or moved away by another request: the two
  // look alike from here, and the reason says so).
  std::string gone_why(const std::string& task_id);
  void reserve_demand(const std::string& task_id, double demand);
  double reserved_demand();
  void report_loop();
  void reap_loop();
  void notify_loop();
  void data_accept_loop();
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
  // Why this node cannot take a task offered to it ("" when it can).
  std::string refusal(const rpc::OfferRequest& req);
  // Tells the task's home that it ended (or is lost), from here.
  void report_end(const rpc::TaskInfo& t, int code, const std::string& reason, bool lost);
  std::string pick_node(const rpc::JobTaskSpec& t);
  template <typename Reply>
  void ask_every_peer(
      const std::function<grpc::Status(rpc::Node::Stub&, grpc::ClientContext*, Reply*)>& call,
      const std::function<void(const Reply&)>& take);
  // A task's request on its control descriptor (task_requests.cc).
  void on_control_request(const std::string& task_id, const std::string& line);
  std::string snapshot_for_task(const std::string& task_id);
  // Ends the tasks of a job that could not start (or be restored) whole, and forgets the job.
  void abandon_job(const std::string& job_id, const std::vector<std::string>& started);
  rpc::JobInfo home_job(const std::string& ref);  // a job homed here (throws otherwise)
  std::vector<std::string> nodes_up();            // this one and the peers up
  std::optional<std::string> locate_channel_peer(const rpc::ChannelEnd& e);
  rpc::Node::Stub& node_stub(const std::string& node);  // a peer's, or this node's own

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
  std::unique_ptr<rpc::Node::Stub> self_stub_;  // channels whose two ends are both here
  ChannelEnds channels_;
  JobRegistry jobs_;
  ControlDescriptors control_;
  LoadSampler sampler_;
  std::mutex load_mu_;
  LoadSample last_load_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> report_soon_{false};
  // The Starter's state (daemon_policy.cc).
  policy::Capacity capacity_;
  TaskGroups task_groups_;
  policy::DemandSampler demand_;
  std::mutex sample_mu_;
  std::chrono::steady_clock::time_point sampled_at_{};
  std::mutex policy_mu_;
  rpc::PolicySettings policy_;
  std::map<std::string, std::pair<double, uint64_t>> reservations_;  // task -> demand, unix ms
  std::atomic<bool> draining_{false};
  policy::EventLog events_{cfg_.name};
  // What the migration sessions use of this node (declared after all of it).
  ServingSessions serving_;
  NodeContext ctx_;
  IncomingSessions incoming_;
  SnapshotParticipant snapshots_;
  SnapshotCoordinator coordinator_;
  policy::Starter starter_{*this, events_};  // last: it uses all of the above

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
  std::vector<std::thread> threads_;
};

// Asks every peer up (2 s each); one that does not answer is left out.
template <typename Reply>
void Daemon::ask_every_peer(
    const std::function<grpc::Status(rpc::Node::Stub&, grpc::ClientContext*, Reply*)>& call,
    const std::function<void(const Reply&)>& take) {
  for (auto& peer : peers_.names()) {
    if (!peers_.up(peer)) continue;
    Reply r;
    auto ctx = deadline_ms(2000);
    if (call(peers_.stub(peer), ctx.get(), &r).ok()) take(r);
  }
}

}  // namespace ferry::node
