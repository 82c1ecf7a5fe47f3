#include "node/channels/pipe_reads.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <string>

namespace ferry::node {

PipeReads::PipeReads(int pipe_end) {
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return;
  // (Through the daemon's own descriptor: a pipe has no other name.)
  const std::string path = "/proc/self/fd/" + std::to_string(pipe_end);
  if (::inotify_add_watch(inotify.get(), path.c_str(), IN_ACCESS) < 0) return;
  inotify_ = std::move(inotify);
}

void PipeReads::forget() {
  if (!inotify_) return;
  alignas(inotify_event) char events[4096];
  while (::read(inotify_.get(), events, sizeof events) > 0) {
  }
}

}  // namespace ferry::node
