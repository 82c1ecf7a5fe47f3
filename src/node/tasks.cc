#include "node/tasks.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include <spdlog/spdlog.h>

#include "cr/image_paths.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

namespace {
constexpr int kRecordingWaitS = 30;  // the longest a migration waits for a snapshot's pause
}  // namespace

uint64_t process_start_ticks(pid_t pid) {
  try {
    return proc::Stat(pid).field(22);
  } catch (const std::exception&) {
    return 0;
  }
}

LocalTasks::LocalTasks(std::string table, std::string init_id)
    : table_(std::move(table)), init_id_(std::move(init_id)) {}

std::vector<rpc::LocalTaskRecord> LocalTasks::load_table() const {
  if (table_.empty()) return {};
  auto bytes = proc::try_read_file(table_);
  if (!bytes) return {};
  rpc::LocalTaskTable t;
  if (!t.ParseFromString(*bytes)) {
    spdlog::error("{} is corrupted: the tasks it listed cannot be adopted", table_);
    return {};
  }
  return {t.tasks().begin(), t.tasks().end()};
}

void LocalTasks::save_locked() {
  if (table_.empty()) return;
  rpc::LocalTaskTable t;
  for (auto& [id, lt] : tasks_) {
    rpc::LocalTaskRecord* r = t.add_tasks();
    *r->mutable_task() = lt.info;
    r->set_start_ticks(lt.start_ticks);
    r->set_boot_id(lt.boot_id);
    r->set_init_id(lt.init_id);
    r->set_committing_to(lt.committing_to);
    r->set_session_id(lt.session_id);
  }
  // Written whole under another name, flushed, then renamed: the table on disk is always one
  // that was complete.
  std::string tmp = table_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  std::string bytes = t.SerializeAsString();
  bool ok = fd >= 0 && ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
            ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok || ::rename(tmp.c_str(), table_.c_str()) != 0)
    spdlog::error("cannot write the task table {}: {}", table_, std::strerror(errno));
}

void LocalTasks::add(const rpc::TaskInfo& info, uint64_t start_ticks) {
  std::lock_guard<std::mutex> lock(mu_);
  LocalTask& t = tasks_[info.id()];
  t = LocalTask{};
  t.info = info;
  t.start_ticks = start_ticks ? start_ticks : process_start_ticks(info.pid());
  t.boot_id = cr::boot_id();
  t.init_id = init_id_;
  save_locked();
}

void LocalTasks::adopt(const rpc::LocalTaskRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  LocalTask& t = tasks_[r.task().id()];
  t = LocalTask{};
  t.info = r.task();
  t.start_ticks = r.start_ticks();
  t.boot_id = r.boot_id();
  t.init_id = r.init_id();
  save_locked();
}

void LocalTasks::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (tasks_.erase(id)) save_locked();
}

std::vector<int> LocalTasks::remove_migrated(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return {};
  std::vector<int> queued = std::move(it->second.queued_signals);
  tasks_.erase(it);
  save_locked();
  return queued;
}

std::optional<LocalTask> LocalTasks::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> LocalTasks::id_of_pid(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, t] : tasks_)
    if (t.info.pid() == pid) return id;
  return std::nullopt;
}

std::vector<rpc::TaskInfo> LocalTasks::snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<rpc::TaskInfo> out;
  for (auto& [id, t] : tasks_) {
    out.push_back(t.info);
    if (t.migrating) out.back().set_state(rpc::TASK_MIGRATING);
  }
  return out;
}

std::vector<LocalTask> LocalTasks::all() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LocalTask> out;
  for (auto& [id, t] : tasks_) out.push_back(t);
  return out;
}

size_t LocalTasks::count() {
  std::lock_guard<std::mutex> lock(mu_);
  return tasks_.size();
}

std::string LocalTasks::begin_migration(const std::string& id) {
  std::unique_lock<std::mutex> lock(mu_);
  // A pause lasts a fork (tens of ms for GiBs); this bound is only against a hung one.
  if (!recording_done_.wait_for(lock, std::chrono::seconds(kRecordingWaitS),
                                [&] { return !recording_.count(id); }))
    return fmt::format("task {} is being recorded by a snapshot for over {} s", id,
                       kRecordingWaitS);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return fmt::format("task {} is not here", id);
  if (it->second.migrating) return fmt::format("task {} is already migrating", id);
  it->second.migrating = true;
  return "";
}

std::vector<int> LocalTasks::end_migration(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return {};
  it->second.migrating = false;
  if (!it->second.committing_to.empty()) {
    it->second.committing_to.clear();
    it->second.session_id.clear();
    save_locked();
  }
  return std::exchange(it->second.queued_signals, {});
}

void LocalTasks::mark_committing(const std::string& id, const std::string& to,
                                 const std::string& session) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  it->second.committing_to = to;
  it->second.session_id = session;
  save_locked();
}

bool LocalTasks::queue_signal_if_migrating(const std::string& id, int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || !it->second.migrating) return false;
  it->second.queued_signals.push_back(sig);
  return true;
}

void LocalTasks::hold(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  held_[pid]++;
}

void LocalTasks::unhold(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  release_locked(pid);
}

bool LocalTasks::begin_recording(const std::string& id, pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second.migrating) return false;
  recording_.insert(id);
  held_[pid]++;
  return true;
}

void LocalTasks::end_recording(const std::string& id, pid_t pid) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    recording_.erase(id);
    release_locked(pid);
  }
  recording_done_.notify_all();
}

void LocalTasks::release_locked(pid_t pid) {
  auto it = held_.find(pid);
  if (it != held_.end() && --it->second == 0) held_.erase(it);
}

bool LocalTasks::held(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  return held_.count(pid) > 0;
}

void LocalTasks::set_exit_reason(const std::string& id, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it != tasks_.end()) it->second.exit_reason = reason;
}

void LocalTasks::set_required_labels(const std::string& id,
                                     const std::map<std::string, std::string>& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  it->second.info.mutable_labels()->clear();
  for (auto& [k, v] : labels) (*it->second.info.mutable_labels())[k] = v;
  save_locked();
}

}  // namespace ferry::node
