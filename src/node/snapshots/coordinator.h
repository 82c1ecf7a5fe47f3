// The coordinator of a job's snapshots (issue 12), on the job's home: it tells every node a
// snapshot begins (so that a marker is never news to a node), asks the initiator's node to
// record the initiator, and collects the parts: each task's cut (from its pause) and image, and
// each channel's recorded state. Tasks no marker can reach (the job's graph is not strongly
// connected, or a channel has ended) are asked to record themselves, which Chandy–Lamport allows
// any process at any time. When every part is in, the counters are checked
// (snapshot/consistency.h), the report is kept in the home's store, and the nodes forget the
// snapshot; a snapshot that cannot complete fails with the reason.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "ferry.grpc.pb.h"

namespace ferry::node {

class SnapshotCoordinator {
 public:
  struct Env {
    std::string node;
    std::string default_store;
    std::function<rpc::JobInfo(const std::string& ref)> job;  // a job homed here
    std::function<rpc::TaskInfo(const std::string& task_id)> locate;
    std::function<std::vector<std::string>()> nodes_up;  // this one included
    std::function<rpc::Node::Stub&(const std::string& node)> stub;
    bool drop_one_recorded = false;  // test fault: a recording loses a message
  };
  explicit SnapshotCoordinator(Env env) : env_(std::move(env)) {}

  // Takes a snapshot of a job homed here; returns its report once it is complete or failed.
  rpc::SnapshotReport take(const rpc::SnapshotRequest& req);
  void part(const rpc::SnapshotPartRequest& p);
  // The reports this node keeps (of `job` or with `id`; "" for all).
  std::vector<rpc::SnapshotReport> reports(const std::string& job, const std::string& id);

 private:
  struct Pending {
    rpc::SnapshotReport report;
    std::map<std::string, int> task_index;  // by name
    std::set<std::string> cut, imaged;
    std::set<uint32_t> recorded;
    std::string failure;
    uint64_t progress = 0;  // parts taken
    bool done() const;
    std::string missing() const;  // the tasks and channels it still waits for
  };
  rpc::SnapshotReport start(const rpc::SnapshotRequest& req, const rpc::JobInfo& job,
                            std::map<std::string, rpc::TaskInfo>& where);
  void begin_everywhere(uint64_t marker, const rpc::SnapshotReport& r, const std::string& store,
                        const std::map<std::string, rpc::TaskInfo>& where);
  // False when the task migrates and its node left it to the next one.
  bool ask_to_record(uint64_t marker, const rpc::TaskInfo& task);
  // Waits for the parts, asking unreached tasks to record themselves.
  void await(uint64_t marker, const std::string& from, const rpc::JobInfo& job,
             const std::map<std::string, rpc::TaskInfo>& where, int timeout_ms);
  void end_everywhere(uint64_t marker);

  const Env env_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<Pending>> pending_;
};

}  // namespace ferry::node
