// ferry cluster init|up|down|start|probe (the local cluster itself: cli/local_cluster.h)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "cli/commands.h"
#include "cli/connect.h"
#include "cli/local_cluster.h"
#include "node/config.h"
#include "node/peers.h"
#include "security/certs.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/printable.h"
#include "util/proc.h"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

// "NODE:KEY=VALUE" -> (NODE, KEY, VALUE).
std::tuple<std::string, std::string, std::string> node_key_value(const std::string& s,
                                                                 const char* option) {
  auto colon = s.find(':'), eq = s.find('=');
  if (colon == std::string::npos || eq == std::string::npos || eq < colon || colon == 0)
    fail("{} wants NODE:KEY=VALUE, got '{}'", option, s);
  return {s.substr(0, colon), s.substr(colon + 1, eq - colon - 1), s.substr(eq + 1)};
}

// CPUs of a node: a positive number, fractional allowed ("0.5").
double parse_cpus(const std::string& s, const char* what) {
  std::optional<double> v = proc::parse_number(s);
  if (!v || !(*v >= 0.01 && *v <= 4096))
    fail("{} wants a number of CPUs between 0.01 and 4096, got '{}'", what, s);
  return *v;
}

// A memory size: a number with an optional K, M or G (MiB when none).
uint64_t parse_size(const std::string& s, const char* what) {
  const size_t digits = std::min(s.find_first_not_of("0123456789"), s.size());
  const std::string unit = s.substr(digits);
  const int shift = unit.empty() || unit == "M" ? 20 : unit == "K" ? 10 : unit == "G" ? 30 : -1;
  if (digits == 0 || digits > 12 || shift < 0)
    fail("{} wants a size like 512M or 2G, got '{}'", what, s);
  const uint64_t n = proc::parse_u64(s.substr(0, digits));
  if (n == 0) fail("{} wants a size above zero, got '{}'", what, s);
  return n << shift;
}

std::map<std::string, local::NodeSettings> node_settings(const std::vector<std::string>& nodes,
                                                         const std::vector<std::string>& labels,
                                                         const std::vector<std::string>& configs,
                                                         const std::vector<std::string>& faults,
                                                         const local::NodeCapacity& all) {
  std::map<std::string, local::NodeSettings> out;
  for (auto& n : nodes) out[n].capacity = all;
  auto known = [&](const std::string& n, const char* option) -> local::NodeSettings& {
    if (std::find(nodes.begin(), nodes.end(), n) == nodes.end())
      fail("{}: the cluster has no node '{}'", option, n);
    return out[n];
  };
  for (auto& l : labels) {
    auto [n, k, v] = node_key_value(l, "--label");
    known(n, "--label").labels[k] = v;
  }
  for (auto& c : configs) {
    auto [n, k, v] = node_key_value(c, "--node-config");
    local::NodeSettings& s = known(n, "--node-config");
    if (k == "cpus") {
      s.capacity.cpus = parse_cpus(v, "--node-config cpus");
    } else if (k == "memory") {
      s.capacity.memory_bytes = parse_size(v, "--node-config memory");
    } else if (k == "restart_delay_ms") {
      node::NodeConfig probe;
      node::apply_setting(probe, "max_tasks", v);  // (the same number check)
      s.restart_delay_ms = static_cast<int>(probe.max_tasks);
    } else {
      node::NodeConfig probe;
      node::apply_setting(probe, k, v);  // refuses a bad key or value now, not at start
      s.config[k] = v;
    }
  }
  for (auto& f : faults) {
    auto eq = f.find('=');
    if (eq == std::string::npos) fail("--test-fault wants NODE=FAULT, got '{}'", f);
    std::string& all = known(f.substr(0, eq), "--test-fault").faults;
    all += (all.empty() ? "" : ",") + f.substr(eq + 1);
  }
  return out;
}

// The settings a node was made with (to start it again): init.conf holds the restart delay and
// the test faults.
local::NodeSettings saved_settings(const local::Cluster& c, const std::string& node) {
  local::NodeSettings s;
  auto text = proc::try_read_file(c.dir + "/nodes/" + node + "/init.conf");
  if (!text) return s;
  auto lines = proc::split(*text, '\n');
  if (!lines.empty() && !lines[0].empty())
    s.restart_delay_ms = static_cast<int>(proc::parse_u64(lines[0]));
  if (lines.size() > 1) s.faults = lines[1];
  if (lines.size() > 3 && !lines[2].empty()) {
    s.capacity.cpus = std::stod(lines[2]);
    s.capacity.memory_bytes = proc::parse_u64(lines[3]);
  }
  return s;
}

void wait_ready(const local::Cluster& c) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!local::ready(c)) {
    if (std::chrono::steady_clock::now() > deadline)
      fail("the cluster did not come up within 30 s (see {}/nodes/*/ferryd.log)", c.dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// /run/ferry/current names the last cluster made: written whole under another name, then renamed.
void remember_current_cluster(const std::string& dir) {
  fs::create_directories("/run/ferry");
  std::string tmp = fmt::format("/run/ferry/.current.{}", ::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd || ::write(fd.get(), dir.data(), dir.size()) != static_cast<ssize_t>(dir.size()) ||
      ::rename(tmp.c_str(), "/run/ferry/current") != 0) {
    ::unlink(tmp.c_str());
    fail_errno(errno, "cannot record {} as the current cluster in /run/ferry/current", dir);
  }
}

std::string given_or_current(const std::string& dir) {
  std::string d = dir.empty() ? current_cluster_dir() : fs::absolute(dir).string();
  if (d.empty()) fail("no cluster to act on (no default cluster; give --dir)");
  return d;
}

void add_init(CLI::App* cluster) {
  // ferry cluster init: CA and node certificates for a cluster of real machines.
  auto* init =
      cluster->add_subcommand("init", "make the cluster CA and a certificate for each node");
  static std::string dir;
  static std::vector<std::string> nodes;
  init->add_option("--dir", dir, "where the certificates go")->required();
  init->add_option("--node", nodes, "NAME=IP of a node (repeat)")->required();
  init->callback([] {
    start_logging();
    security::ensure_cluster_ca(dir);
    for (auto& n : nodes) {
      auto eq = n.find('=');
      std::string name = n.substr(0, eq), ip = eq == std::string::npos ? "" : n.substr(eq + 1);
      auto files = security::issue_node_cert(dir, name, ip);
      std::printf("%s: %s %s\n", name.c_str(), files.cert.c_str(), files.key.c_str());
    }
    std::printf("CA: %s/ca.pem\n", dir.c_str());
  });
}

void add_up(CLI::App* cluster) {
  auto* up = cluster->add_subcommand("up", "start a local cluster of N nodes on this machine");
  static int count = 3;
  static std::string dir;
  static std::vector<std::string> labels, faults, configs;
  up->add_option("--nodes", count, "how many nodes")->check(CLI::Range(1, 200));
  up->add_option("--dir", dir, "cluster directory (default /run/ferry/cluster)");
  up->add_option("--label", labels, "NODE:KEY=VALUE, a label of a node (repeat)");
  static std::string cpus, memory;
  up->add_option("--cpus", cpus, "CPU capacity of each node (fractional, e.g. 0.5; default: none)");
  up->add_option("--memory", memory, "memory limit of each node (e.g. 512M, 2G; default: none)");
  up->add_option("--node-config", configs,
                 "NODE:KEY=VALUE for cpus, memory, max_tasks, max_load_per_cpu, "
                 "reserve_memory_mb, lazy_timeout_s, report_interval_ms, down_after_ms, "
                 "restart_delay_ms");
  up->add_option("--test-fault", faults,
                 "NODE=FAULT for tests (die-after-commit, fail-restore, ...)");
  up->callback([] {
    start_logging();
    require_root("ferry cluster up");
    std::string d = dir.empty() ? default_cluster_dir() : fs::absolute(dir).string();
    std::vector<std::string> names;
    for (int i = 1; i <= count; i++) names.push_back("node" + std::to_string(i));
    local::NodeCapacity all;
    if (!cpus.empty()) all.cpus = parse_cpus(cpus, "--cpus");
    if (!memory.empty()) all.memory_bytes = parse_size(memory, "--memory");
    auto settings = node_settings(names, labels, configs, faults, all);
    local::Cluster c = local::prepare(d, names);
    try {
      local::make_network(c);
      local::write_node_configs(c, settings);
      for (auto& n : names) local::start_node(c, n, settings[n]);
      wait_ready(c);
    } catch (...) {
      local::tear_down(c);
      throw;
    }
    // The last cluster made is the one commands on this host reach (README), wherever it is.
    remember_current_cluster(d);
    std::printf("cluster of %zu nodes up in %s (the default for ferry commands until another is "
                "made; --cluster DIR picks one)\n",
                names.size(), printable(d).c_str());
  });
}

void add_down(CLI::App* cluster) {
  auto* down =
      cluster->add_subcommand("down", "stop a local cluster and remove everything it made");
  static std::string dir;
  down->add_option("--dir", dir, "cluster directory (default: the current cluster)");
  down->callback([] {
    start_logging();
    require_root("ferry cluster down");
    std::string d = given_or_current(dir);
    auto c = local::find(d);
    if (!c) fail("no cluster in {}", d);
    local::tear_down(*c);
    std::printf("cluster in %s is down\n", printable(d).c_str());
  });
}

void add_start(CLI::App* cluster) {
  auto* start = cluster->add_subcommand(
      "start", "start a node of a local cluster again (after it died, as after a reboot)");
  static std::string dir, node;
  start->add_option("NODE", node, "the node")->required();
  start->add_option("--dir", dir, "cluster directory (default: the current cluster)");
  start->callback([] {
    start_logging();
    require_root("ferry cluster start");
    std::string d = given_or_current(dir);
    auto c = local::find(d);
    if (!c) fail("no cluster in {}", d);
    if (std::find(c->nodes.begin(), c->nodes.end(), node) == c->nodes.end())
      fail("the cluster in {} has no node '{}'", d, node);
    if (local::node_init(*c, node)) fail("node {} runs already", node);
    local::start_node(*c, node, saved_settings(*c, node));
    wait_ready(*c);
    std::printf("node %s is up again\n", node.c_str());
  });
}

void add_probe(CLI::App* cluster) {
  auto* probe =
      cluster->add_subcommand("probe", "call a node over mutual TLS with the given certificate");
  static std::string addr, name, ca, cert, key;
  probe->add_option("--address", addr, "host:port of the node")->required();
  probe->add_option("--name", name, "node name its certificate must carry")->required();
  probe->add_option("--ca", ca, "CA certificate")->required();
  probe->add_option("--cert", cert, "our certificate")->required();
  probe->add_option("--key", key, "our key")->required();
  probe->callback([] {
    start_logging();
    node::NodeConfig c;
    c.ca_cert = ca;
    c.cert = cert;
    c.key = key;
    auto stub = rpc::Node::NewStub(node::peer_channel(c, name, addr));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    rpc::ListTasksReply r;
    grpc::Status s = stub->ListTasks(&ctx, rpc::ListTasksRequest(), &r);
    if (!s.ok()) fail("node {} refused the call: {}", name, s.error_message());
    std::printf("node %s answered: %d tasks\n", name.c_str(), r.tasks_size());
  });
}

}  // namespace

void add_cluster(CLI::App& app) {
  auto* cluster = app.add_subcommand("cluster", "make, start and stop a cluster of nodes");
  cluster->require_subcommand(1);
  add_init(cluster);
  add_up(cluster);
  add_down(cluster);
  add_start(cluster);
  add_probe(cluster);
}

}  // namespace ferry::cli
