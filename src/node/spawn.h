// Starting a task: argv with its environment and working directory, stdin from a file or
// /dev/null, stdout and stderr into one pipe whose read end the output relay takes. The task
// gets a session of its own, default signal dispositions and an empty signal mask.
#pragma once

#include <sys/types.h>

#include "ferry.pb.h"
#include "util/fd.h"

namespace ferry::node {

struct Spawned {
  pid_t pid = -1;
  UniqueFd output;  // read end of the task's stdout/stderr pipe
};

Spawned spawn_task(const rpc::RunRequest& req);

}  // namespace ferry::node
