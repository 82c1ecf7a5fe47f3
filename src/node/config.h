// A node's configuration (ferryd --config FILE), in TOML:
//
//   name = "node1"
//   listen = "10.213.0.1:7700"        # node-to-node RPC (mutual TLS)
//   data_listen = "10.213.0.1:7701"   # page streams
//   state_dir = "/var/lib/ferry/node1"
//   control_socket = "/run/ferry/node1.sock"   # the ferry command, root only
//   page_store = "/shared/ferry/pagestore"     # flushing: shared by all nodes
//   labels = { gpu = "1" }
//   max_tasks = 64                    # refuse incoming tasks beyond this many
//   max_load_per_cpu = 4.0            # refuse when the load average per CPU is above (0: never)
//   reserve_memory_mb = 256           # memory an incoming task must leave free
//   lazy_timeout_s = 120              # a lazy phase's broken page stream may take this long to
//                                     # come back before the task is given up
//   [tls]
//   ca = "ca.pem"  cert = "node1.pem"  key = "node1.key"
//   [[peers]]
//   name = "node2"  address = "10.213.0.2:7700"
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ferry::node {

struct PeerConfig {
  std::string name;
  std::string address;
};

struct NodeConfig {
  std::string name;
  std::string listen;
  std::string data_listen;
  std::string state_dir;
  std::string control_socket;
  std::string page_store;  // flushing: a directory every node mounts (default state_dir/pagestore)
  std::map<std::string, std::string> labels;
  std::string ca_cert, cert, key;
  std::vector<PeerConfig> peers;
  uint32_t max_tasks = 64;
  double max_load_per_cpu = 0;
  uint64_t reserve_memory_bytes = 256ull << 20;
  uint32_t report_interval_ms = 1000;
  uint32_t down_after_ms = 3000;
  // Lazy phase (eager-dirty, copy-on-reference): how long a broken page stream may take to come
  // back while neither side knows the other dead; then the task is killed at the destination.
  uint32_t lazy_timeout_ms = 120000;
};

// Reads and checks a configuration file. Throws ferry::Error naming the problem.
NodeConfig load_config(const std::string& path);
// Sets one of max_tasks, max_load_per_cpu, reserve_memory_mb from text (ferry cluster up
// --node-config). Throws naming the setting when the key or the value is bad.
void apply_setting(NodeConfig& c, const std::string& key, const std::string& value);
std::string render_config(const NodeConfig& c);

}  // namespace ferry::node
