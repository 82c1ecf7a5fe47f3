// The cluster's certificates: one CA, and per node a key and a certificate signed by it, valid
// for TLS server and client use, naming the node (DNS SAN) and its address (IP SAN). Nodes
// accept only peers whose certificate chains to the cluster CA (mutual TLS).
#pragma once

#include <string>

namespace ferry::security {

struct CertFiles {
  std::string ca_cert;
  std::string cert;
  std::string key;
};

// Creates ca.pem and ca.key in dir (unless they exist). Keys are written 0600.
void ensure_cluster_ca(const std::string& dir);
// Creates <dir>/<node>.pem and <node>.key signed by the CA in dir.
CertFiles issue_node_cert(const std::string& dir, const std::string& node, const std::string& ip);
// The files of a node issued before.
CertFiles node_cert_files(const std::string& dir, const std::string& node);

std::string read_pem(const std::string& path);

}  // namespace ferry::security
