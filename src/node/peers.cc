#include "node/peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "security/certs.h"
#include "util/fd.h"
#include "util/error.h"

namespace ferry::node {

std::shared_ptr<grpc::ChannelCredentials> client_credentials(const NodeConfig& cfg) {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = security::read_pem(cfg.ca_cert);
  o.pem_cert_chain = security::read_pem(cfg.cert);
  o.pem_private_key = security::read_pem(cfg.key);
  return grpc::SslCredentials(o);
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const NodeConfig& cfg) {
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = security::read_pem(cfg.ca_cert);
  o.pem_key_cert_pairs.push_back({security::read_pem(cfg.key), security::read_pem(cfg.cert)});
  return grpc::SslServerCredentials(o);
}

std::shared_ptr<grpc::Channel> peer_channel(const NodeConfig& cfg, const std::string& peer,
                                            const std::string& address) {
  grpc::ChannelArguments args;
  // Certificates name nodes; the address is only where to find them.
  args.SetSslTargetNameOverride(peer);
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 1 << 30);
  args.SetInt(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, 1 << 30);
  // A peer that was gone (partition, restarted ferryd) is tried again within a second: gRPC's
  // own minimum wait before reconnecting is 20 s, and its backoff grows to minutes. The first
  // retry comes soon: a cluster's nodes start one after the other, and the first report to a
  // peer is refused when the peer is not listening yet.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // A connection that silently stopped carrying anything (a cut link) is noticed in ~3 s.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return grpc::CreateCustomChannel(address, client_credentials(cfg), args);
}

Peers::Peers(const NodeConfig& cfg) : cfg_(cfg) {
  for (auto& p : cfg.peers) {
    Peer peer;
    peer.address = p.address;
    peer.stub = rpc::Node::NewStub(peer_channel(cfg, p.name, p.address));
    peers_.emplace(p.name, std::move(peer));
  }
}

bool Peers::known(const std::string& name) const {
  return peers_.count(name) > 0;
}

std::vector<std::string> Peers::names() const {
  std::vector<std::string> out;
  for (auto& [n, p] : peers_) out.push_back(n);
  return out;
}

rpc::Node::Stub& Peers::stub(const std::string& name) {
  auto it = peers_.find(name);
  if (it == peers_.end()) fail("unknown node '{}'", name);
  return *it->second.stub;
}

std::string Peers::address(const std::string& name) const {
  auto it = peers_.find(name);
  return it == peers_.end() ? "" : it->second.address;
}

bool Peers::record_report(const rpc::LoadReport& r) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(r.node());
  if (it == peers_.end()) return false;
  const bool was_up = ms_since_report(it->second) <= cfg_.down_after_ms;
  it->second.report = r;
  it->second.seen = std::chrono::steady_clock::now();
  return !was_up || !it->second.reached;
}

void Peers::report_sent(const std::string& name, bool reached) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(name);
  if (it != peers_.end()) it->second.reached = reached;
}

bool Peers::reached(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(name);
  return it != peers_.end() && it->second.reached;
}

uint64_t Peers::ms_since_report(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(name);
  return it == peers_.end() ? UINT64_MAX : ms_since_report(it->second);
}

uint64_t Peers::ms_since_report(const Peer& p) {
  if (!p.report) return UINT64_MAX;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - p.seen)
                                   .count());
}

bool Peers::up(const std::string& name) const {
  return ms_since_report(name) <= cfg_.down_after_ms;
}

std::optional<rpc::LoadReport> Peers::last_report(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(name);
  if (it == peers_.end()) return std::nullopt;
  return it->second.report;
}

bool refuses_connections(const std::string& address, int timeout_ms) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(address.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr) != 1) return false;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return false;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return false;
  if (errno == ECONNREFUSED) return true;
  if (errno != EINPROGRESS) return false;
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;  // silent: not a refusal
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == ECONNREFUSED;
}

std::unique_ptr<grpc::ClientContext> deadline_ms(int ms) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  return ctx;
}

}  // namespace ferry::node
