// The jobs whose home is this node (the node asked to run them): each job's tasks, by the names
// its file gives them, with their task ids, and its channels. A task of a job is an ordinary task
// (its own home keeps where it runs and how it ended); the job's record is what turns JOB/NAME
// into a task id and finds a channel's other end.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::node {

class JobRegistry {
 public:
  explicit JobRegistry(std::string node) : node_(std::move(node)) {}

  std::string new_id();
  void put(const rpc::JobInfo& job);
  void remove(const std::string& id);
  std::optional<rpc::JobInfo> get(const std::string& id);
  // The jobs whose id or name is `ref` (every job for "").
  std::vector<rpc::JobInfo> find(const std::string& ref);

 private:
  std::string node_;
  std::mutex mu_;
  uint64_t next_ = 1;
  std::map<std::string, rpc::JobInfo> jobs_;
};

// The task of `job` that its file names `name` ("" when the job has none, or it has not
// started yet).
std::string task_id_in(const rpc::JobInfo& job, const std::string& name);

// The end of channel `index` of a job that a task starts with (its writer's or its reader's);
// `planned`: where each task of the job starts.
rpc::ChannelEnd channel_end_of(const std::string& job, uint32_t index, const rpc::JobChannel& c,
                               bool writer, const std::string& home,
                               const std::map<std::string, std::string>& planned);

}  // namespace ferry::node
