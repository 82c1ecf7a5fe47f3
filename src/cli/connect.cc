#include "cli/connect.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <grpcpp/grpcpp.h>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::cli {

Target& target() {
  static Target t;
  return t;
}

std::string default_cluster_dir() { return "/run/ferry/cluster"; }

std::string current_cluster_dir() {
  if (!target().cluster.empty()) return target().cluster;
  if (const char* e = std::getenv("FERRY_CLUSTER"); e && *e) return e;
  auto cur = proc::try_read_file("/run/ferry/current");
  if (cur) return std::string(proc::trim(*cur));
  return "";
}

std::vector<std::string> cluster_nodes(const std::string& dir) {
  auto list = proc::try_read_file(dir + "/nodes.list");
  if (!list) return {};
  return proc::split(*list, '\n');
}

std::string control_socket(const std::string& dir, const std::string& node) {
  return dir + "/nodes/" + node + "/control.sock";
}

std::unique_ptr<rpc::Control::Stub> control() {
  if (::geteuid() != 0) fail("talking to ferryd needs root (its control socket is root's only)");
  std::string sock = target().socket;
  if (sock.empty()) {
    std::string dir = current_cluster_dir();
    if (dir.empty()) fail("no ferry cluster here: start one with 'ferry cluster up', or give --cluster DIR");
    auto nodes = cluster_nodes(dir);
    if (nodes.empty()) fail("{} is not a ferry cluster directory (no nodes.list)", dir);
    std::string node = target().node.empty() ? nodes.front() : target().node;
    bool known = false;
    for (auto& n : nodes) known |= n == node;
    if (!known) fail("the cluster in {} has no node '{}'", dir, node);
    sock = control_socket(dir, node);
  }
  struct stat st;
  if (::stat(sock.c_str(), &st) != 0) fail("no ferry node answers at {} (is the cluster up?)", sock);
  auto channel = grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials());
  return rpc::Control::NewStub(channel);
}

void check(const grpc::Status& s) {
  if (s.ok()) return;
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) fail("the node does not answer: {}", s.error_message());
  throw Error(s.error_message());
}

}  // namespace ferry::cli
