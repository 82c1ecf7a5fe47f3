// What the task verbs (run, ps, nodes, logs, kill, wait, migrate) share: how a task id is taken
// and how a size is printed.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::cli {

// A task as the command line takes it: its id ("node1.7": letters, digits, dots, dashes and
// underscores), or JOB/NAME (a job's id or name, and the task's name in the job file); anything
// else is refused here, before it reaches a daemon.
const std::string& task_id(const std::string& id);

// "12.3 MiB".
std::string mib(uint64_t bytes);

}  // namespace ferry::cli
