// Starting a task: argv with its environment and working directory, stdin from a file or
// /dev/null, stdout and stderr into one pipe whose read end the output relay takes. The task
// gets a session of its own, default signal dispositions and an empty signal mask. A task of a
// job gets its channel ends at their fd numbers (over stdio where a channel names fd 0, 1 or 2),
// and every task its control descriptor.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "ferry.pb.h"
#include "util/fd.h"

namespace ferry::node {

struct Spawned {
  pid_t pid = -1;
  UniqueFd output;  // read end of the task's stdout/stderr pipe
};

// fds: fd number in the task -> the descriptor it gets there (channel ends, its control socket);
// env: added to its environment.
Spawned spawn_task(const rpc::RunRequest& req, const std::map<int, int>& fds = {},
                   const std::vector<std::string>& env = {});

}  // namespace ferry::node
