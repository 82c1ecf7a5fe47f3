#include "node/channels/unread_bytes.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "cr/resources/files/file_kinds.h"
#include "cr/resources/files/sockets.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

std::string copy_unread_bytes(pid_t pid, int node_side) {
  struct stat st;
  if (::fstat(node_side, &st) != 0) fail_errno(errno, "fstat of a channel's pipe");
  const std::string link = "pipe:[" + std::to_string(st.st_ino) + "]";
  for (const std::string& name : proc::list_dir(proc::path(pid, "fd"))) {
    if (proc::try_read_link(proc::path(pid, "fd/" + name)).value_or("") != link) continue;
    UniqueFd end = cr::borrow_fd(pid, std::stoi(name));
    if ((::fcntl(end.get(), F_GETFL) & O_ACCMODE) != O_RDONLY) continue;
    int queued = 0;
    if (::ioctl(end.get(), FIONREAD, &queued) != 0) fail_errno(errno, "FIONREAD on a channel");
    return queued > 0 ? cr::read_queued(end.get(), static_cast<size_t>(queued)) : std::string();
  }
  return "";
}

}  // namespace ferry::node
