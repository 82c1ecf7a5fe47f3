// Control-group membership: a restored process goes back into the groups it was in (each
// hierarchy, v1 and v2), never into the restorer's (that would lift its limits, or impose
// others). A group that does not exist on this machine fails the restore with its name, unless
// the user asked the process to stay in the restorer's groups.
//
// dump: the lines of /proc/PID/cgroup ("ID:controllers:path"). restore: the new process's pid
// written into cgroup.procs of the same path of the hierarchy mounted here with those
// controllers. In a migration the groups are relative to the daemons': a task in (or below) the
// source ferryd's group goes into (or below) the destination ferryd's; any other group keeps its
// path.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "image.pb.h"

namespace ferry::cr {

void dump_cgroups(pid_t pid, image::TaskAttrs* attrs);

// The /proc/self/cgroup lines of the daemons at both ends of a migration.
struct CgroupRebase {
  std::vector<std::string> from;  // the source daemon's
  std::vector<std::string> to;    // this process's (the destination daemon's)
};
std::vector<std::string> own_cgroup_lines();
// One /proc/PID/cgroup line as it is at the destination.
std::string rebase_cgroup_line(const std::string& line, const CgroupRebase& rebase);

// Where the groups of `lines` are here: empty if every one exists, else the reason why not.
std::string missing_cgroups(const std::vector<std::string>& lines,
                            const CgroupRebase* rebase = nullptr);

// Puts `pid` into each of its groups (rebased as above); fails naming a group that is missing or
// cannot be entered.
void enter_cgroups(pid_t pid, const image::TaskAttrs& attrs, const CgroupRebase* rebase = nullptr);

}  // namespace ferry::cr
