// The tasks whose home is this node: where each one runs, or how it ended. A location update
// carries the task's epoch (migrations so far); an older one never overrides a newer one.
// Kept in state_dir/home.pb so that it survives a restart of ferryd.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ferry.pb.h"
#include "node/states.h"

namespace ferry::node {

class HomeRegistry {
 public:
  HomeRegistry(std::string node, std::string state_file);

  std::string new_id();
  void add(const rpc::TaskInfo& t);
  std::optional<rpc::TaskInfo> get(const std::string& id);
  // A task now runs at t.node (from the node it arrived at).
  void moved(const rpc::TaskInfo& t);
  // The task ended (code: its status) or, when `lost`, is gone without a status (reason: why).
  void exited(const std::string& id, int code, const std::string& node, uint64_t epoch,
              const std::string& reason = "", bool lost = false);
  // Waits up to timeout_ms for the task to end (or be lost); returns its record.
  std::optional<rpc::TaskInfo> wait_exit(const std::string& id, int timeout_ms);
  std::vector<rpc::TaskInfo> all();

 private:
  void persist();
  std::string node_;
  std::string state_file_;
  std::mutex mu_;
  std::condition_variable changed_;
  uint64_t next_ = 1;
  std::map<std::string, rpc::TaskInfo> tasks_;
};

}  // namespace ferry::node
