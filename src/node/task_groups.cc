#include "node/task_groups.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "util/cgroup_mounts.h"
#include "util/error.h"
#include "util/fd.h"

namespace ferry::node {

TaskGroups::TaskGroups() {
  for (auto& h : cgroup::mounted_hierarchies()) {
    if (h.v2) continue;  // (v2 allows no processes beside child groups: ferryd keeps them)
    const std::string dir = h.mount_point + cgroup::own_group(h) + "/work";
    struct stat st;
    if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0)
      procs_.push_back(dir + "/cgroup.procs");
  }
}

void TaskGroups::enter(pid_t pid) const {
  const std::string text = std::to_string(pid);
  for (auto& p : procs_) {
    UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      fail_errno(errno, "cannot put process {} into {}", pid, p);
  }
}

}  // namespace ferry::node
