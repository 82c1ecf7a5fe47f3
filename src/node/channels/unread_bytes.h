// What a reader task has not read yet of a channel of bytes: the bytes in its pipe, copied
// without taking them (a snapshot records them as the channel's and the task reads them still).
#pragma once

#include <sys/types.h>

#include <string>

namespace ferry::node {

// `node_side`: ferryd's write end of the task's pipe. The task's read end is found by the pipe's
// inode, not by a number it may have moved. "" when the task no longer holds it.
std::string copy_unread_bytes(pid_t pid, int node_side);

}  // namespace ferry::node
