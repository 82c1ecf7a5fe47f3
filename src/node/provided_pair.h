// A socketpair whose one end ferryd gives a task and keeps the other (a control descriptor, the
// end of a channel of messages): the task's end is known by its inode (cr/provided.h).
#pragma once

#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdint>

#include "util/error.h"
#include "util/fd.h"

namespace ferry::node {

struct ProvidedPair {
  UniqueFd task_side, node_side;
  uint64_t task_inode = 0;
};

// `type`: SOCK_STREAM, SOCK_SEQPACKET.
inline ProvidedPair make_provided_pair(int type) {
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) fail_errno(errno, "socketpair");
  ProvidedPair p;
  p.task_side.reset(sv[0]);
  p.node_side.reset(sv[1]);
  struct stat st;
  if (::fstat(sv[0], &st) != 0) fail_errno(errno, "fstat");
  p.task_inode = st.st_ino;
  return p;
}

}  // namespace ferry::node
