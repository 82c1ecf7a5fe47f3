#include "node/home.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

HomeRegistry::HomeRegistry(std::string node, std::string state_file)
    : node_(std::move(node)), state_file_(std::move(state_file)) {
  auto bytes = proc::try_read_file(state_file_);
  if (!bytes) return;
  rpc::ListTasksReply saved;
  if (!saved.ParseFromString(*bytes)) fail("{} is corrupted", state_file_);
  for (auto& t : saved.tasks()) {
    tasks_[t.id()] = t;
    auto dot = t.id().rfind('.');
    if (dot != std::string::npos)
      next_ = std::max<uint64_t>(next_, std::stoull(t.id().substr(dot + 1)) + 1);
  }
}

void HomeRegistry::persist() {
  rpc::ListTasksReply out;
  for (auto& [id, t] : tasks_) *out.add_tasks() = t;
  std::string tmp = state_file_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  std::string bytes = out.SerializeAsString();
  bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  if (ok) ::rename(tmp.c_str(), state_file_.c_str());
}

std::string HomeRegistry::new_id() {
  std::lock_guard<std::mutex> lock(mu_);
  return node_ + "." + std::to_string(next_++);
}

void HomeRegistry::add(const rpc::TaskInfo& t) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_[t.id()] = t;
  persist();
  changed_.notify_all();
}

std::optional<rpc::TaskInfo> HomeRegistry::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return std::nullopt;
  return it->second;
}

void HomeRegistry::moved(const rpc::TaskInfo& t) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(t.id());
  if (it == tasks_.end()) return;
  rpc::TaskInfo& cur = it->second;
  // A newer epoch proves the task runs: it overrides a "lost" verdict made without knowing.
  bool revived = cur.state() == rpc::TASK_LOST && t.epoch() > cur.epoch();
  if ((ended(cur) && !revived) || t.epoch() < cur.epoch()) return;
  cur.clear_exit_reason();
  cur.set_node(t.node());
  cur.set_pid(t.pid());
  cur.set_epoch(t.epoch());
  cur.set_state(rpc::TASK_RUNNING);
  *cur.mutable_labels() = t.labels();  // (a task's own move to a label adds one it requires)
  persist();
  changed_.notify_all();
}

void HomeRegistry::exited(const std::string& id, int code, const std::string& node, uint64_t epoch,
                          const std::string& reason, bool lost) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(id);
  if (it == tasks_.end() || ended(it->second) || epoch < it->second.epoch()) return;
  it->second.set_state(lost ? rpc::TASK_LOST : rpc::TASK_EXITED);
  it->second.set_exit_code(code);
  it->second.set_exit_reason(reason);
  it->second.set_node(node);
  it->second.set_ended_unix_ms(now_unix_ms());
  persist();
  changed_.notify_all();
}

std::optional<rpc::TaskInfo> HomeRegistry::wait_exit(const std::string& id, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return std::nullopt;
    if (ended(it->second)) return it->second;
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) return it->second;
  }
}

std::vector<rpc::TaskInfo> HomeRegistry::all() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<rpc::TaskInfo> out;
  for (auto& [id, t] : tasks_) out.push_back(t);
  return out;
}

}  // namespace ferry::node
