// The tasks running on this node (wherever their home is), and the processes ferryd holds under
// ptrace right now (dumps, restores): the reaper leaves those alone.
//
// The table is kept on disk too (state_dir/tasks.pb, written atomically on every change), so that
// a ferryd that starts again adopts the tasks still running here (see Daemon::adopt_tasks).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
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
  uint64_t start_ticks = 0;         // with the pid, names the process (/proc/PID/stat field 22)
  std::string boot_id, init_id;     // the boot and the ferry-init it was started or arrived under
  std::string committing_to, session_id;  // a migration out past Commit
};

class LocalTasks {
 public:
  // table: where the table lives on disk ("" for none); init_id: the node's ferry-init.
  LocalTasks(std::string table = "", std::string init_id = "");

  // What the table on disk held when this ferryd started.
  std::vector<rpc::LocalTaskRecord> load_table() const;

  // A task running here now, as process pid (its start time is read from /proc unless given).
  void add(const rpc::TaskInfo& info, uint64_t start_ticks = 0);
  // A task adopted from the table of an earlier ferryd.
  void adopt(const rpc::LocalTaskRecord& record);
  void remove(const std::string& id);
  // A task that migrated away: removed, and the signals queued for it while it migrated
  // returned, at once (a signal sent meanwhile is either among them or finds it gone).
  std::vector<int> remove_migrated(const std::string& id);
  std::optional<LocalTask> get(const std::string& id);
  std::optional<std::string> id_of_pid(pid_t pid);
  std::vector<rpc::TaskInfo> snapshot();
  std::vector<LocalTask> all();
  size_t count();
  // Marks the task as migrating; the reason it cannot when it is not here or already migrating
  // (empty when it can). A snapshot's pause of the task (begin_recording) ends first: both trace
  // the task, and a freeze finding it traced refuses.
  std::string begin_migration(const std::string& id);
  // Ends the migrating state; returns the signals queued meanwhile.
  std::vector<int> end_migration(const std::string& id);
  // Queues sig when the task is migrating (returns true), else returns false.
  bool queue_signal_if_migrating(const std::string& id, int sig);
  // Why the task is about to end, when ferry ends it (reported with its exit).
  void set_exit_reason(const std::string& id, const std::string& reason);
  // Sets the node labels the task requires (kept on disk, carried by its migrations).
  void set_required_labels(const std::string& id, const std::map<std::string, std::string>& labels);
  // The migration of `id` reached Commit (its original dies with this ferryd): recorded on disk
  // before Commit is sent, so that a ferryd starting again asks `to` what became of it.
  void mark_committing(const std::string& id, const std::string& to, const std::string& session);

  void hold(pid_t pid);
  void unhold(pid_t pid);
  bool held(pid_t pid);
  // A snapshot's pause of the task (it holds `pid` too): false when the task is not here or
  // migrates; no migration begins until end_recording.
  bool begin_recording(const std::string& id, pid_t pid);
  void end_recording(const std::string& id, pid_t pid);
  // Tasks being started: until each is in the table, a child that is not is left alone (it may
  // be one of them, already ended, whose status must not be thrown away).
  void begin_start() { starting_++; }
  void end_start() { starting_--; }
  bool starting() const { return starting_ > 0; }

 private:
  void save_locked();
  void release_locked(pid_t pid);

  std::string table_;
  std::string init_id_;
  std::mutex mu_;
  std::map<std::string, LocalTask> tasks_;
  // How many hold each pid (a migration, a snapshot's pause): held until the last lets go.
  std::map<pid_t, int> held_;
  std::set<std::string> recording_;
  std::condition_variable recording_done_;
  std::atomic<int> starting_{0};
};

// RAII: a task being started (see LocalTasks::begin_start).
class StartingTask {
 public:
  explicit StartingTask(LocalTasks& t) : t_(t) { t_.begin_start(); }
  ~StartingTask() { t_.end_start(); }
  StartingTask(const StartingTask&) = delete;
  StartingTask& operator=(const StartingTask&) = delete;

 private:
  LocalTasks& t_;
};

// /proc/PID/stat field 22 (the start time, in clock ticks after boot); 0 when there is none.
uint64_t process_start_ticks(pid_t pid);

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
