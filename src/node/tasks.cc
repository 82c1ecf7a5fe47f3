#include "node/tasks.h"

namespace ferry::node {

void LocalTasks::add(const rpc::TaskInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_[info.id()].info = info;
}

void LocalTasks::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.erase(id);
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
    if (t.migrating) out.back().set_state("migrating");
  }
  return out;
}

size_t LocalTasks::count() {
  std::lock_guard<std::mutex> lock(mu_);
  return tasks_.size();
}

bool LocalTasks::begin_migration(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || it->second.migrating) return false;
  it->second.migrating = true;
  return true;
}

std::vector<int> LocalTasks::end_migration(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return {};
  it->second.migrating = false;
  return std::exchange(it->second.queued_signals, {});
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
  held_.insert(pid);
}

void LocalTasks::unhold(pid_t pid) {
  std::lock_guard<std::mutex> lock(mu_);
  held_.erase(pid);
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

}  // namespace ferry::node
