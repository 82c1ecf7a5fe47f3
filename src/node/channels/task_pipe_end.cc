#include "node/channels/task_pipe_end.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <string>

#include "cr/resources/files/sockets.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {

UniqueFd borrow_task_pipe_end(pid_t pid, int node_side, int access) {
  struct stat st;
  if (::fstat(node_side, &st) != 0) fail_errno(errno, "fstat of a channel's pipe");
  const std::string link = "pipe:[" + std::to_string(st.st_ino) + "]";
  for (const std::string& name : proc::list_dir(proc::path(pid, "fd"))) {
    if (proc::try_read_link(proc::path(pid, "fd/" + name)).value_or("") != link) continue;
    UniqueFd end = cr::borrow_fd(pid, std::stoi(name));
    if ((::fcntl(end.get(), F_GETFL) & O_ACCMODE) == access) return end;
  }
  return UniqueFd();
}

}  // namespace ferry::node
