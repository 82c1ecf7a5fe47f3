// Where this node's tasks run in the control groups: a group named "work" below ferryd's own,
// where the node has one (a local cluster's node in v1 hierarchies: cli/node_cgroups.h). There
// the tasks share the node's CPU quota as one entity beside ferryd's threads, so a node full of
// CPU-bound tasks still gives its ferryd CPU to move them. A task that arrives by migration
// goes there by the usual rebase (below the source ferryd's group -> below this one's); a task
// started or restored here is put there by ferryd just after it is made. Without such a group
// (a real machine) tasks stay in ferryd's groups.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ferry::node {

class TaskGroups {
 public:
  TaskGroups();  // finds the groups (none is fine)
  // Moves pid into the tasks groups; throws naming the group it cannot enter.
  void enter(pid_t pid) const;
  const std::vector<std::string>& procs_files() const { return procs_; }

 private:
  std::vector<std::string> procs_;  // cgroup.procs of each tasks group
};

}  // namespace ferry::node
