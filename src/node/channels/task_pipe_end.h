// The task's end of one of its channel pipes, borrowed from the (frozen) task with `pidfd_getfd`:
// found by the pipe's inode, not by a number the task may have moved it to.
#pragma once

#include <sys/types.h>

#include "util/fd.h"

namespace ferry::node {

// `node_side`: ferryd's end of the pipe; `access`: the task's end's (O_RDONLY for a reader's,
// O_WRONLY for a writer's). Empty when the task no longer holds it.
UniqueFd borrow_task_pipe_end(pid_t pid, int node_side, int access);

}  // namespace ferry::node
