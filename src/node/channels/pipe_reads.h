// What wakes a reader's end waiting for its task to read: a pipe full by its bytes (spliced pages
// fill few of its slots, so the kernel still reports room, POLLOUT) gives no event of its own
// when the task reads from it. An inotify watch on the pipe's inode does: every read(2), readv or
// splice out of it raises IN_ACCESS, whoever reads. Consecutive events merge in the queue, so it
// holds one however many reads come while nobody waits.
//
// inotify instances are limited per user (fs.inotify.max_user_instances, 128 by default): when
// none can be had the watch is empty (fd() is -1, which poll() ignores) and its owner looks at the
// pipe by its timer alone, as it must anyway for reads that raise no event (vmsplice).
#pragma once

#include "util/fd.h"

namespace ferry::node {

class PipeReads {
 public:
  explicit PipeReads(int pipe_end);  // either end of the pipe (they share its inode)
  PipeReads(const PipeReads&) = delete;
  PipeReads& operator=(const PipeReads&) = delete;

  int fd() const { return inotify_.get(); }  // readable once the pipe was read from
  void forget();                             // what was seen so far
  bool watching() const { return static_cast<bool>(inotify_); }

 private:
  UniqueFd inotify_;
};

}  // namespace ferry::node
