// The other nodes: a mutual-TLS channel to each, and what their last load report said. A peer
// whose report is older than down_after_ms is down.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ferry.grpc.pb.h"
#include "node/config.h"

namespace ferry::node {

// Client credentials of this node (its certificate, the cluster CA).
std::shared_ptr<grpc::ChannelCredentials> client_credentials(const NodeConfig& cfg);
std::shared_ptr<grpc::ServerCredentials> server_credentials(const NodeConfig& cfg);
// A channel to address that expects the peer's certificate to name `peer`.
std::shared_ptr<grpc::Channel> peer_channel(const NodeConfig& cfg, const std::string& peer,
                                            const std::string& address);

class Peers {
 public:
  explicit Peers(const NodeConfig& cfg);

  bool known(const std::string& name) const;
  std::vector<std::string> names() const;
  rpc::Node::Stub& stub(const std::string& name);  // throws for an unknown peer
  std::string address(const std::string& name) const;

  // True when the peer should hear from this node now: it was not up before this report (it
  // just came, or came back), or this node's last report to it did not reach it.
  bool record_report(const rpc::LoadReport& r);
  void report_sent(const std::string& name, bool reached);
  bool reached(const std::string& name) const;  // this node's last report to it arrived
  bool up(const std::string& name) const;
  std::optional<rpc::LoadReport> last_report(const std::string& name) const;
  uint64_t ms_since_report(const std::string& name) const;  // UINT64_MAX if never

 private:
  struct Peer {
    std::string address;
    std::unique_ptr<rpc::Node::Stub> stub;
    std::optional<rpc::LoadReport> report;
    std::chrono::steady_clock::time_point seen{};
    bool reached = false;
  };
  static uint64_t ms_since_report(const Peer& p);  // with mu_ held
  const NodeConfig& cfg_;
  mutable std::mutex mu_;
  std::map<std::string, Peer> peers_;
};

// Whether nothing listens at host:port (the connection is refused at once): the machine is there
// but its ferryd is not. A silent address (a partition, a machine that is off) is not "refusing".
bool refuses_connections(const std::string& address, int timeout_ms = 1000);

// How long a peer's ferryd may refuse connections before it counts as dead, not restarting
// (ferry-init starts a dead ferryd again within 5 s at most).
constexpr int kDeadAfterRefusingMs = 10000;

// A client context with a deadline.
std::unique_ptr<grpc::ClientContext> deadline_ms(int ms);

}  // namespace ferry::node
