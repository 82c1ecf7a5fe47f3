// Which ferryd the command line talks to: the cluster directory (--cluster DIR, $FERRY_CLUSTER,
// or the one `ferry cluster up` made the default, recorded in /run/ferry/current), and a node of
// it (--node NAME, else the first). --socket PATH names a control socket directly.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry.grpc.pb.h"

namespace ferry::cli {

struct Target {
  std::string cluster;  // --cluster
  std::string node;     // --node
  std::string socket;   // --socket
};
Target& target();

std::string default_cluster_dir();   // /run/ferry/cluster
std::string current_cluster_dir();   // resolved, or "" when there is none
std::vector<std::string> cluster_nodes(const std::string& dir);
std::string control_socket(const std::string& dir, const std::string& node);

// A stub for the chosen node's control socket. Throws ferry::Error with advice when there is none.
std::unique_ptr<rpc::Control::Stub> control();
// Turns a failed status into a ferry::Error with the daemon's own message.
void check(const grpc::Status& s);

}  // namespace ferry::cli
