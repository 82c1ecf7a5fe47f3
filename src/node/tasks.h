// The tasks running on this node (wherever their home is), and the processes ferryd holds under
// ptrace right now (dumps, restores): the reaper leaves those alone.
#pragma once

#include <sys/types.h>

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::node {

struct LocalTask {
  rpc::TaskInfo info;
  bool migrating = false;
  std::vector<int> queued_signals;  // sent while migrating: delivered where it ends up
  std::string exit_reason;          // ferry ended it (lazy pages lost): why
};

class LocalTasks {
 public:
  void add(const rpc::TaskInfo& info);
  void remove(const std::string& id);
  std::optional<LocalTask> get(const std::string& id);
  std::optional<std::string> id_of_pid(pid_t pid);
  std::vector<rpc::TaskInfo> snapshot();
  size_t count();
  // Marks the task as migrating; false when it is not here or already migrating.
  bool begin_migration(const std::string& id);
  // Ends the migrating state; returns the signals queued meanwhile.
  std::vector<int> end_migration(const std::string& id);
  // Queues sig when the task is migrating (returns true), else returns false.
  bool queue_signal_if_migrating(const std::string& id, int sig);
  // Why the task is about to end, when ferry ends it (reported with its exit).
  void set_exit_reason(const std::string& id, const std::string& reason);

  void hold(pid_t pid);
  void unhold(pid_t pid);
  bool held(pid_t pid);

 private:
  std::mutex mu_;
  std::map<std::string, LocalTask> tasks_;
  std::set<pid_t> held_;
};

// RAII: a pid ferryd holds for the duration of a scope.
class HeldPid {
 public:
  HeldPid(LocalTasks& t, pid_t pid) : t_(t), pid_(pid) { t_.hold(pid_); }
  ~HeldPid() { t_.unhold(pid_); }
  HeldPid(const HeldPid&) = delete;
  HeldPid& operator=(const HeldPid&) = delete;

 private:
  LocalTasks& t_;
  pid_t pid_;
};

}  // namespace ferry::node
