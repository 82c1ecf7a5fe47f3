// Control-group membership: a restored process goes back into the groups it was in (each
// hierarchy, v1 and v2), where they exist on this machine; where one does not exist, it stays in
// the restorer's and the user is told (a note). Limits are never lifted by a restore: the
// process is never put anywhere it was not.
//
// dump: the lines of /proc/PID/cgroup ("ID:controllers:path"). restore: the new process's pid
// written into cgroup.procs of the same path of the hierarchy mounted here with those
// controllers.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "image.pb.h"

namespace ferry::cr {

void dump_cgroups(pid_t pid, image::TaskAttrs* attrs);
// Returns notes for the user (a group missing here, a move that was refused).
std::vector<std::string> restore_cgroups(pid_t pid, const image::TaskAttrs& attrs);

}  // namespace ferry::cr
