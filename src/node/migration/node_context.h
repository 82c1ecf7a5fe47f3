// What a migration session may use of its node: the node's registries and links, and the few
// things only the node as a whole does (tell a task's home, deliver a signal wherever the task
// runs). The Daemon owns all of them and outlives every session.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "ferry.pb.h"
#include "node/channels/channel_ends.h"
#include "node/commit_journal.h"
#include "node/control_descriptors.h"
#include "node/config.h"
#include "node/faults.h"
#include "node/init_link.h"
#include "node/peers.h"
#include "node/relay.h"
#include "node/tasks.h"

namespace ferry::node {

// The outgoing sessions whose page server still holds the original (MigrationStatus answers
// "serving" for them).
class ServingSessions {
 public:
  void add(const std::string& session) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.insert(session);
  }
  void remove(const std::string& session) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.erase(session);
  }
  bool contains(const std::string& session) {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_.count(session) > 0;
  }

 private:
  std::mutex mu_;
  std::set<std::string> ids_;
};

struct NodeContext {
  const NodeConfig& cfg;
  const Faults& faults;
  Peers& peers;
  LocalTasks& tasks;
  OutputRelay& relay;
  ChannelEnds& channels;
  ControlDescriptors& control;
  InitLink& init;
  CommitJournal& journal;
  ServingSessions& serving;
  const std::atomic<bool>& stopping;
  // A task of this node ended with this status (it goes to its home).
  std::function<void(const std::string& id, int code)> task_ended;
  // Tells the task's home, from here, that it ended or is lost.
  std::function<void(const rpc::TaskInfo& t, int code, const std::string& reason, bool lost)>
      report_end;
  // Delivers a signal to the task wherever it runs now.
  std::function<void(const std::string& id, int sig)> signal_task;
  // Where the task is now, as its home knows it.
  std::function<rpc::TaskInfo(const std::string& id)> locate;
  // Tells the task's home that it runs here now.
  // Tells the task's home (and this node's Starter) that it runs here now, come from `from`.
  std::function<void(const rpc::TaskInfo& t, const std::string& from)> announce_arrival;

  const std::string& name() const { return cfg.name; }
};

}  // namespace ferry::node
