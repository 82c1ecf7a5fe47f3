#include "node/channels/unread_bytes.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "cr/resources/files/file_kinds.h"
#include "node/channels/task_pipe_end.h"
#include "util/error.h"

namespace ferry::node {

std::string copy_unread_bytes(pid_t pid, int node_side) {
  UniqueFd end = borrow_task_pipe_end(pid, node_side, O_RDONLY);
  if (!end) return "";
  int queued = 0;
  if (::ioctl(end.get(), FIONREAD, &queued) != 0) fail_errno(errno, "FIONREAD on a channel");
  return queued > 0 ? cr::read_queued(end.get(), static_cast<size_t>(queued)) : std::string();
}

}  // namespace ferry::node
