// The Starter: one in every ferryd, deciding for its own node's tasks when to move which task
// where, and proposing each move to the destination, which decides with its own state (see
// rules.h for the rules, docs/policy.md for the whole). No central scheduler: a Starter needs
// only its own node and the load reports of the others, so it goes on when some are down.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ferry.pb.h"
#include "policy/events.h"
#include "policy/rules.h"

namespace ferry::policy {

// A local task's channel traffic with a task on another node (bytes both ways, cumulative).
struct Traffic {
  std::string task, peer_task, peer_node;
  uint64_t bytes = 0;
  uint64_t task_rss = 0, peer_rss = 0;
};

// What the Starter needs of its node (the daemon).
class StarterHost {
 public:
  virtual ~StarterHost() = default;
  virtual rpc::PolicySettings policy_settings() = 0;
  // Samples the tasks' demand now when the last sample is older than max_age_ms.
  virtual void refresh_demand(uint64_t max_age_ms) = 0;
  virtual NodeView self_view() = 0;
  // The other nodes as their last reports show them; reported_unix_ms per node.
  virtual std::vector<NodeView> peer_views(std::map<std::string, uint64_t>* reported_unix_ms) = 0;
  // The tasks running here and not migrating.
  virtual std::vector<TaskView> local_tasks() = 0;
  virtual std::vector<Traffic> traffic() = 0;
  // A number that changes when the task changes in a way that could make it movable (its
  // files, its mappings).
  virtual uint64_t task_signature(const std::string& id) = 0;
  virtual rpc::MigrateReport move(const rpc::MigrateRequest& req) = 0;
};

class Starter {
 public:
  Starter(StarterHost& host, EventLog& events) : host_(host), events_(events) {}
  ~Starter() { stop(); }
  void start();
  void stop();

  // Moves every task off this node before the deadline (the node already refuses new ones).
  rpc::DrainReply drain(const rpc::DrainRequest& req);
  // A task's own request: to a node that carries the labels, by the same negotiation.
  rpc::MigrateReport move_to_labels(const std::string& task_id,
                                    const std::map<std::string, std::string>& labels,
                                    const std::string& strategy);
  // A task came here from `from` (it is not sent straight back, and stays a while).
  void arrived(const std::string& task_id, const std::string& from);
  // Fills came_from, stay_ms and unmovable of tasks the Starter knows more about.
  void annotate(std::vector<TaskView>& tasks);

 private:
  struct Proposal {
    TaskView task;
    std::vector<std::string> destinations;  // in order of preference
    std::string policy, strategy;
    double source_load = 0;
    bool asked_by_task = false;  // the destination answers the task itself
  };
  void loop();
  void tick();
  void share_load(const rpc::PolicySettings& s);
  void bring_together(const rpc::PolicySettings& s);
  // Capabilities: tasks here that need labels this node lacks (it lost them, or a restore put
  // the task here) go where the labels are.
  void place_by_labels();
  // Traffic rates (bytes/s) since the last look, per local task and partner.
  std::vector<std::pair<Traffic, double>> traffic_rates();
  std::vector<NodeView> peers_with_own_moves();
  // Offers the task to each destination in turn; the one that took it, or "".
  std::string propose(const Proposal& p, std::vector<std::string>* refusals = nullptr);
  void run_all(const std::vector<Proposal>& proposals, size_t max_in_flight);
  rpc::PolicyEvent event(const std::string& kind, const std::string& task,
                         const std::string& policy, const std::string& reason);
  // Records the event once while `what` stays the same for `key` (a steady state is not news;
  // the reason may carry figures that change every look).
  void note(const std::string& key, const std::string& what, rpc::PolicyEvent e);

  StarterHost& host_;
  EventLog& events_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
  int overloaded_looks_ = 0;
  struct Arrival {
    std::string from;
    uint64_t at_ms = 0;  // when it was proposed: the destination reserves it from its offer on
  };
  std::map<std::string, Arrival> arrivals_;
  struct Unmovable {
    uint64_t signature = 0;
    std::string reason;
  };
  std::map<std::string, Unmovable> unmovable_;
  struct Given {
    std::string node;
    double demand = 0;
    uint64_t at_ms = 0;
  };
  std::vector<Given> given_;  // this Starter's moves, until the destination's report shows them
  std::map<std::string, std::pair<uint64_t, uint64_t>> traffic_seen_;  // pair -> bytes, ms
  std::map<std::string, std::string> noted_;
};

}  // namespace ferry::policy
