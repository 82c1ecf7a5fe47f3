// ferry cluster init|up|down|status|probe
//
// A local cluster is N nodes on this machine, each in its own network, PID and mount namespace,
// joined by a bridge that lives in a namespace of its own (nothing is added to the host's
// network). ferryd is PID 1 of its node's PID namespace, so a node that dies takes its
// processes with it, like a machine. The host's file system is shared, as a shared file system
// between machines would be; each node mounts its own /proc.
//
// Layout of the cluster directory:
//   nodes.list, cluster.id, tls/ (CA and node certificates),
//   nodes/<name>/{ferryd.toml, control.sock, ferryd.log, ferryd.pid, state/}
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <xxhash.h>

#include "cli/commands.h"
#include "cli/connect.h"
#include "node/config.h"
#include "node/peers.h"
#include "security/certs.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/proc.h"

extern char** environ;

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kNodePort = 7700;
constexpr int kDataPort = 7701;
constexpr const char* kSubnet = "10.213.0.";

std::string cluster_id(const std::string& dir) {
  std::string real = fs::weakly_canonical(dir).string();
  return fmt::format("{:06x}", XXH3_64bits(real.data(), real.size()) & 0xffffff);
}
std::string bridge_ns(const std::string& id) {
  return "ferry-" + id + "-br";
}
std::string node_ns(const std::string& id, const std::string& node) {
  return "ferry-" + id + "-" + node;
}

// Runs a command (ip ...), throwing with its error output when it fails.
void run(const std::vector<std::string>& argv, bool may_fail = false) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  UniqueFd rd(p[0]), wr(p[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail_errno(rc, "cannot run {}", argv[0]);
  wr.reset();
  std::string err;
  char buf[512];
  ssize_t n;
  while ((n = ::read(rd.get(), buf, sizeof buf)) > 0) err.append(buf, static_cast<size_t>(n));
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!may_fail && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
    std::string cmd;
    for (auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    fail("'{}' failed: {}", cmd, std::string(proc::trim(err)));
  }
}

std::vector<std::string> netns_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (!fs::exists("/run/netns")) return out;
  for (auto& e : fs::directory_iterator("/run/netns")) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  return out;
}

pid_t read_pid(const std::string& path) {
  auto s = proc::try_read_file(path);
  if (!s) return -1;
  try {
    return static_cast<pid_t>(proc::parse_u64(*s));
  } catch (const Error&) {
    return -1;
  }
}

bool alive(pid_t pid) {
  return pid > 0 && ::kill(pid, 0) == 0;
}

std::string self_dir() {
  return fs::path(proc::read_link("/proc/self/exe")).parent_path().string();
}

// Starts ferryd as PID 1 of a new PID (and mount) namespace inside the node's network namespace.
pid_t start_ferryd(const std::string& netns, const std::string& config, const std::string& log,
                   const std::string& pid_file, const std::string& faults) {
  std::string ferryd = self_dir() + "/ferryd";
  if (::access(ferryd.c_str(), X_OK) != 0) fail("cannot find ferryd next to ferry ({})", ferryd);
  pid_t mid = ::fork();
  if (mid < 0) fail_errno(errno, "fork");
  if (mid == 0) {
    ::setsid();
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    // A daemon must not keep its starter's pipes open: whoever reads our output would never see
    // EOF.
    ::close_range(3, ~0U, 0);
    int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(101);
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) _exit(102);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(103);
    pid_t init = ::fork();
    if (init == 0) {
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
      if (!faults.empty())
        ::setenv("FERRY_TEST_FAULTS", faults.c_str(), 1);
      else
        ::unsetenv("FERRY_TEST_FAULTS");
      ::execl(ferryd.c_str(), "ferryd", "--config", config.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    FILE* f = std::fopen(pid_file.c_str(), "w");
    if (f) {
      std::fprintf(f, "%d\n", init);
      std::fclose(f);
    }
    _exit(init > 0 ? 0 : 104);
  }
  int st = 0;
  ::waitpid(mid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("cannot start ferryd in namespace {} (step {})", netns,
         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  return read_pid(pid_file);
}

void tear_down(const std::string& dir, bool quiet) {
  std::string id = proc::try_read_file(dir + "/cluster.id").value_or(cluster_id(dir));
  id = std::string(proc::trim(id));
  // The nodes first: killing a node's PID 1 ends every process of the node.
  std::vector<pid_t> pids;
  if (fs::exists(dir + "/nodes"))
    for (auto& e : fs::directory_iterator(dir + "/nodes")) {
      pid_t pid = read_pid(e.path().string() + "/ferryd.pid");
      if (alive(pid)) {
        ::kill(pid, SIGKILL);
        pids.push_back(pid);
      }
    }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (pid_t pid : pids)
    while (alive(pid) && std::chrono::steady_clock::now() < deadline) {
      ::waitpid(pid, nullptr, WNOHANG);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  for (auto& ns : netns_with_prefix("ferry-" + id + "-"))
    if (ns != bridge_ns(id)) run({"ip", "netns", "del", ns}, true);
  run({"ip", "netns", "del", bridge_ns(id)}, true);
  std::error_code ec;
  for (const char* p : {"nodes", "tls", "nodes.list", "cluster.id", "pagestore"})
    fs::remove_all(dir + "/" + p, ec);
  fs::remove(dir, ec);  // only when empty: it may be the user's directory
  auto cur = proc::try_read_file("/run/ferry/current");
  if (cur && std::string(proc::trim(*cur)) == dir) fs::remove("/run/ferry/current", ec);
  if (!quiet) std::printf("cluster in %s is down\n", dir.c_str());
}

bool cluster_ready(const std::string& dir, const std::vector<std::string>& nodes) {
  for (auto& n : nodes) {
    auto channel =
        grpc::CreateChannel("unix:" + control_socket(dir, n), grpc::InsecureChannelCredentials());
    auto stub = rpc::Control::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    rpc::NodesReply r;
    if (!stub->Nodes(&ctx, rpc::NodesRequest(), &r).ok()) return false;
    for (auto& node : r.nodes())
      if (node.state() != "up") return false;
  }
  return true;
}

}  // namespace

void add_cluster(CLI::App& app) {
  auto* cluster = app.add_subcommand("cluster", "make, start and stop a cluster of nodes");
  cluster->require_subcommand(1);

  // ferry cluster init: CA and node certificates for a cluster of real machines.
  auto* init =
      cluster->add_subcommand("init", "make the cluster CA and a certificate for each node");
  static std::string init_dir;
  static std::vector<std::string> init_nodes;
  init->add_option("--dir", init_dir, "where the certificates go")->required();
  init->add_option("--node", init_nodes, "NAME=IP of a node (repeat)")->required();
  init->callback([] {
    start_logging();
    security::ensure_cluster_ca(init_dir);
    for (auto& n : init_nodes) {
      auto eq = n.find('=');
      std::string name = n.substr(0, eq), ip = eq == std::string::npos ? "" : n.substr(eq + 1);
      auto files = security::issue_node_cert(init_dir, name, ip);
      std::printf("%s: %s %s\n", name.c_str(), files.cert.c_str(), files.key.c_str());
    }
    std::printf("CA: %s/ca.pem\n", init_dir.c_str());
  });

  auto* up = cluster->add_subcommand("up", "start a local cluster of N nodes on this machine");
  static int up_nodes = 3;
  static std::string up_dir;
  static std::vector<std::string> up_labels, up_faults, up_settings;
  up->add_option("--nodes", up_nodes, "how many nodes")->check(CLI::Range(1, 200));
  up->add_option("--dir", up_dir, "cluster directory (default /run/ferry/cluster)");
  up->add_option("--label", up_labels, "NODE:KEY=VALUE, a label of a node (repeat)");
  up->add_option("--node-config", up_settings,
                 "NODE:KEY=VALUE for max_tasks, max_load_per_cpu, reserve_memory_mb");
  up->add_option("--test-fault", up_faults,
                 "NODE=FAULT for tests (die-after-commit, fail-restore, ...)");
  up->callback([] {
    start_logging();
    require_root("ferry cluster up");
    bool make_default = up_dir.empty();
    std::string dir = make_default ? default_cluster_dir() : fs::absolute(up_dir).string();
    fs::create_directories(dir);
    if (fs::exists(dir + "/nodes"))
      for (auto& e : fs::directory_iterator(dir + "/nodes"))
        if (alive(read_pid(e.path().string() + "/ferryd.pid")))
          fail("a cluster already runs in {}; stop it with 'ferry cluster down'", dir);
    tear_down(dir, true);  // leftovers of a crashed cluster
    fs::create_directories(dir);
    ::chmod(dir.c_str(), 0700);
    std::string id = cluster_id(dir);
    std::map<std::string, std::map<std::string, std::string>> labels;
    for (auto& l : up_labels) {
      auto colon = l.find(':'), eq = l.find('=');
      if (colon == std::string::npos || eq == std::string::npos || eq < colon)
        fail("--label wants NODE:KEY=VALUE, got '{}'", l);
      labels[l.substr(0, colon)][l.substr(colon + 1, eq - colon - 1)] = l.substr(eq + 1);
    }
    std::map<std::string, std::map<std::string, std::string>> settings;
    for (auto& l : up_settings) {
      auto colon = l.find(':'), eq = l.find('=');
      if (colon == std::string::npos || eq == std::string::npos || eq < colon)
        fail("--node-config wants NODE:KEY=VALUE, got '{}'", l);
      settings[l.substr(0, colon)][l.substr(colon + 1, eq - colon - 1)] = l.substr(eq + 1);
    }
    std::map<std::string, std::string> faults;
    for (auto& f : up_faults) {
      auto eq = f.find('=');
      if (eq == std::string::npos) fail("--test-fault wants NODE=FAULT, got '{}'", f);
      faults[f.substr(0, eq)] += (faults[f.substr(0, eq)].empty() ? "" : ",") + f.substr(eq + 1);
    }
    std::vector<std::string> names;
    for (int i = 1; i <= up_nodes; i++) names.push_back("node" + std::to_string(i));

    // The network: a bridge in its own namespace, one veth per node (jumbo frames, as in a
    // datacenter network).
    run({"ip", "netns", "add", bridge_ns(id)});
    run({"ip", "-n", bridge_ns(id), "link", "add", "br0", "mtu", "9000", "type", "bridge"});
    run({"ip", "-n", bridge_ns(id), "link", "set", "br0", "up"});
    for (size_t i = 0; i < names.size(); i++) {
      std::string ns = node_ns(id, names[i]), veth = "v" + std::to_string(i + 1);
      run({"ip", "netns", "add", ns});
      run({"ip", "-n", ns, "link", "set", "lo", "up"});
      run({"ip", "-n", bridge_ns(id), "link", "add", veth, "mtu", "9000", "type", "veth", "peer",
           "name", "eth0", "mtu", "9000", "netns", ns});
      run({"ip", "-n", bridge_ns(id), "link", "set", veth, "master", "br0"});
      run({"ip", "-n", bridge_ns(id), "link", "set", veth, "up"});
      run({"ip", "-n", ns, "addr", "add", kSubnet + std::to_string(i + 1) + "/24", "dev", "eth0"});
      run({"ip", "-n", ns, "link", "set", "eth0", "up"});
    }
    std::string tls = dir + "/tls";
    security::ensure_cluster_ca(tls);
    std::string list;
    for (size_t i = 0; i < names.size(); i++) {
      std::string ip = kSubnet + std::to_string(i + 1);
      auto certs = security::issue_node_cert(tls, names[i], ip);
      node::NodeConfig c;
      c.name = names[i];
      c.listen = ip + ":" + std::to_string(kNodePort);
      c.data_listen = ip + ":" + std::to_string(kDataPort);
      std::string ndir = dir + "/nodes/" + names[i];
      fs::create_directories(ndir);
      c.state_dir = ndir + "/state";
      c.page_store = dir + "/pagestore";  // the host's file system is the nodes' shared one
      c.control_socket = ndir + "/control.sock";
      c.labels = labels[names[i]];
      for (auto& [k, v] : settings[names[i]]) {
        if (k == "max_tasks")
          c.max_tasks = static_cast<uint32_t>(std::stoul(v));
        else if (k == "max_load_per_cpu")
          c.max_load_per_cpu = std::stod(v);
        else if (k == "reserve_memory_mb")
          c.reserve_memory_bytes = std::stoull(v) << 20;
        else
          fail("--node-config: unknown setting '{}'", k);
      }
      c.ca_cert = certs.ca_cert;
      c.cert = certs.cert;
      c.key = certs.key;
      for (size_t j = 0; j < names.size(); j++)
        if (j != i)
          c.peers.push_back(
              {names[j], kSubnet + std::to_string(j + 1) + ":" + std::to_string(kNodePort)});
      FILE* f = std::fopen((ndir + "/ferryd.toml").c_str(), "w");
      if (!f) fail_errno(errno, "cannot write {}", ndir + "/ferryd.toml");
      std::fputs(node::render_config(c).c_str(), f);
      std::fclose(f);
      list += names[i] + "\n";
    }
    FILE* f = std::fopen((dir + "/nodes.list").c_str(), "w");
    std::fputs(list.c_str(), f);
    std::fclose(f);
    f = std::fopen((dir + "/cluster.id").c_str(), "w");
    std::fputs(id.c_str(), f);
    std::fclose(f);
    for (auto& n : names) {
      std::string ndir = dir + "/nodes/" + n;
      start_ferryd(node_ns(id, n), ndir + "/ferryd.toml", ndir + "/ferryd.log",
                   ndir + "/ferryd.pid", faults[n]);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!cluster_ready(dir, names)) {
      if (std::chrono::steady_clock::now() > deadline) {
        tear_down(dir, true);
        fail("the cluster did not come up within 30 s (see {}/nodes/*/ferryd.log)", dir);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (make_default) {
      fs::create_directories("/run/ferry");
      FILE* cur = std::fopen("/run/ferry/current", "w");
      if (cur) {
        std::fputs(dir.c_str(), cur);
        std::fclose(cur);
      }
    }
    std::printf("cluster of %zu nodes up in %s (%s)\n", names.size(), dir.c_str(),
                make_default ? "the default for ferry commands" : "use --cluster DIR");
  });

  auto* down =
      cluster->add_subcommand("down", "stop a local cluster and remove everything it made");
  static std::string down_dir;
  down->add_option("--dir", down_dir, "cluster directory (default: the current cluster)");
  down->callback([] {
    start_logging();
    require_root("ferry cluster down");
    std::string dir = down_dir.empty() ? current_cluster_dir() : fs::absolute(down_dir).string();
    if (dir.empty()) fail("no cluster to stop (no default cluster; give --dir)");
    tear_down(dir, false);
  });

  auto* probe =
      cluster->add_subcommand("probe", "call a node over mutual TLS with the given certificate");
  static std::string p_addr, p_name, p_ca, p_cert, p_key;
  probe->add_option("--address", p_addr, "host:port of the node")->required();
  probe->add_option("--name", p_name, "node name its certificate must carry")->required();
  probe->add_option("--ca", p_ca, "CA certificate")->required();
  probe->add_option("--cert", p_cert, "our certificate")->required();
  probe->add_option("--key", p_key, "our key")->required();
  probe->callback([] {
    start_logging();
    node::NodeConfig c;
    c.ca_cert = p_ca;
    c.cert = p_cert;
    c.key = p_key;
    auto stub = rpc::Node::NewStub(node::peer_channel(c, p_name, p_addr));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    rpc::ListTasksReply r;
    grpc::Status s = stub->ListTasks(&ctx, rpc::ListTasksRequest(), &r);
    if (!s.ok()) fail("node {} refused the call: {}", p_name, s.error_message());
    std::printf("node %s answered: %d tasks\n", p_name.c_str(), r.tasks_size());
  });
}

}  // namespace ferry::cli
