// What the task verbs (run, ps, nodes, logs, kill, wait, migrate, job) share: how a task id is
// taken, how a task is waited for, and how a size is printed.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "ferry.grpc.pb.h"

namespace ferry::cli {

// A task as the command line takes it: its id ("node1.7": letters, digits, dots, dashes and
// underscores), or JOB/NAME (a job's id or name, and the task's name in the job file); anything
// else is refused here, before it reaches a daemon.
const std::string& task_id(const std::string& id);

// Waits for a task to end (or be lost), asking in slices of at most 5 s (a node may restart
// meanwhile), never past `deadline` (none: for ever); false when it still runs then.
bool wait_task(rpc::Control::Stub& stub, const std::string& id, rpc::WaitReply* reply,
               std::optional<std::chrono::steady_clock::time_point> deadline);

// "12.3 MiB".
std::string mib(uint64_t bytes);

}  // namespace ferry::cli
