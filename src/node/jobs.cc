#include "node/jobs.h"

namespace ferry::node {

std::string JobRegistry::new_id() {
  std::lock_guard<std::mutex> lock(mu_);
  return node_ + ".j" + std::to_string(next_++);
}

void JobRegistry::put(const rpc::JobInfo& job) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_[job.id()] = job;
}

void JobRegistry::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.erase(id);
}

std::optional<rpc::JobInfo> JobRegistry::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

std::vector<rpc::JobInfo> JobRegistry::find(const std::string& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<rpc::JobInfo> out;
  for (auto& [id, job] : jobs_)
    if (ref.empty() || id == ref || job.name() == ref) out.push_back(job);
  return out;
}

std::string task_id_in(const rpc::JobInfo& job, const std::string& name) {
  for (auto& t : job.tasks())
    if (t.name() == name) return t.task_id();
  return "";
}

}  // namespace ferry::node
