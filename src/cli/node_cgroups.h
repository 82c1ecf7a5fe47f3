// Each node of a local cluster runs in a control group of its own that holds its CPU capacity
// and memory limit, so that load on one machine is real: a node of half a CPU gives its tasks
// half a CPU, whatever the host has. The group is ferry-<cluster id>/<node> in the hierarchies
// that carry the cpu and memory controllers (v1, as on this machine, or v2). The node's init
// enters it before anything else starts, so ferryd and every task inherit it; a migrating task
// goes into the same place relative to the destination's ferryd (cr/resources/cgroups.h), i.e.
// into the destination node's group.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::cli::local {

struct NodeCapacity {
  double cpus = 0;            // 0: no CPU limit
  uint64_t memory_bytes = 0;  // 0: no memory limit
};

// The node's group directories (one per hierarchy used); empty when no hierarchy here carries
// the controllers (the node then runs without limits).
std::vector<std::string> node_cgroup_dirs(const std::string& cluster_id, const std::string& node);
// Makes the node's group (and the cluster's above it) and sets its limits. Throws naming the
// file that cannot be written.
void make_node_cgroup(const std::string& cluster_id, const std::string& node,
                      const NodeCapacity& cap);
// Moves the calling process into the groups `dirs` (node_cgroup_dirs): only open and write,
// so a child between fork and exec may call it. Returns false when it could not.
bool enter_cgroup_dirs(const std::vector<std::string>& dirs);
// Removes the cluster's groups, waiting (at most 5 s) for their last processes to leave.
void remove_cluster_cgroups(const std::string& cluster_id);

}  // namespace ferry::cli::local
