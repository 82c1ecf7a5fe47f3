// What the task verbs (run, ps, nodes, logs, kill, wait, migrate) share: how a task id is taken
// and how a size is printed.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::cli {

// A task id as the command line takes it: what ferry makes ("node1.7") is letters, digits,
// dots, dashes and underscores; anything else is refused here, before it reaches a daemon.
const std::string& task_id(const std::string& id);

// "12.3 MiB".
std::string mib(uint64_t bytes);

}  // namespace ferry::cli
