// A local cluster: N nodes on this machine, each in its own network, PID and mount namespace,
// joined by a bridge that lives in a namespace of its own (nothing is added to the host's
// network). Each node's PID 1 is ferry-init, which holds the node's namespaces and supervises
// the node's ferryd: a ferryd that dies is started again and its tasks run on; a node whose init
// dies takes its processes with it, like a machine. The host's file system is shared, as a
// shared file system between machines would be; each node mounts its own /proc.
//
// The cluster directory is trusted only when it is root's and nobody else may write it; it is a
// cluster of ours only when it holds cluster.id. Nothing in it is deleted that ferry did not
// make, and no process is signalled by a number alone: a node's init is named by a pidfd, and
// only after /proc showed it is ferry-init of that node of that cluster, in that node's network
// namespace.
//
// Layout of the cluster directory:
//   cluster.id (the id; "made-directory" when ferry created the directory), nodes.list,
//   tls/ (CA and node certificates), pagestore/,
//   nodes/<name>/{ferryd.toml, control.sock, ferryd.log, init.pid, state/}
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/node_cgroups.h"
#include "util/fd.h"

namespace ferry::cli::local {

struct Cluster {
  std::string dir;
  std::string id;
  bool made_dir = false;  // ferry created the directory: it goes with the cluster
  std::vector<std::string> nodes;
};

std::string bridge_ns(const std::string& id);
std::string node_ns(const std::string& id, const std::string& node);

// The cluster in dir; nullopt when dir holds none (no cluster.id). Throws when dir exists but
// is not root's or may be written by others.
std::optional<Cluster> find(const std::string& dir);

// Makes (or checks) dir for a new cluster and marks it (cluster.id): an existing directory must
// be root's, not writable by others, and empty or holding a stopped cluster of ours (whose
// leftovers are removed first). Its mode is never changed.
Cluster prepare(const std::string& dir, const std::vector<std::string>& nodes);

struct NodeSettings {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> config;  // max_tasks, max_load_per_cpu, reserve_memory_mb
  std::string faults;                         // FERRY_TEST_FAULTS of its ferryd
  int restart_delay_ms = 200;                 // ferry-init's delay before starting ferryd again
  NodeCapacity capacity;                      // its control group's limits (node_cgroups.h)
};

// The bridge and one namespace per node, the certificates, each node's configuration.
void make_network(const Cluster& c);
void write_node_configs(const Cluster& c, const std::map<std::string, NodeSettings>& settings);
// Starts the node's ferry-init (and with it its ferryd). Throws when it cannot.
void start_node(const Cluster& c, const std::string& node, const NodeSettings& settings);
// The node's init if it runs (verified as above), as a pidfd; an empty fd otherwise.
UniqueFd node_init(const Cluster& c, const std::string& node);
// Every node answers and sees all others up.
bool ready(const Cluster& c);
// Kills the nodes (verified), removes the namespaces and what ferry made in the directory.
void tear_down(const Cluster& c);

}  // namespace ferry::cli::local
