#include "cli/local_cluster.h"

#include "cli/node_cgroups.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <xxhash.h>

#include "cli/connect.h"
#include "ferry.grpc.pb.h"
#include "node/config.h"
#include "security/certs.h"
#include "util/error.h"
#include "util/owned_files.h"
#include "util/proc.h"

extern char** environ;

namespace ferry::cli::local {
namespace {

namespace fs = std::filesystem;

constexpr int kNodePort = 7700;
constexpr int kDataPort = 7701;
constexpr const char* kSubnet = "10.213.0.";
constexpr const char* kIdFile = "cluster.id";
constexpr const char* kMadeDir = "made-directory";
// What `cluster up` makes in the directory, and all that `cluster down` removes.
constexpr const char* kOurs[] = {"nodes", "tls", "nodes.list", "pagestore", kIdFile};

std::string make_id(const std::string& dir) {
  std::string real = fs::weakly_canonical(dir).string();
  return fmt::format("{:06x}", XXH3_64bits(real.data(), real.size()) & 0xffffff);
}

std::string ip_of(size_t index) {
  return kSubnet + std::to_string(index + 1);
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

std::string self_dir() {
  return fs::path(proc::read_link("/proc/self/exe")).parent_path().string();
}

std::string node_dir(const Cluster& c, const std::string& node) {
  return c.dir + "/nodes/" + node;
}

void write_file(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd || ::write(fd.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    fail_errno(errno, "cannot write {}", path);
}

bool has_entries(const std::string& dir) {
  for (auto& e : fs::directory_iterator(dir)) {
    (void)e;
    return true;
  }
  return false;
}

// /proc/PID/cmdline holds the words `a` `b` one right after the other.
bool cmdline_has(const std::string& cmdline, const std::string& a, const std::string& b) {
  std::string pair = a + '\0' + b + '\0';
  return cmdline.find(pair) != std::string::npos;
}

}  // namespace

std::string bridge_ns(const std::string& id) {
  return "ferry-" + id + "-br";
}
std::string node_ns(const std::string& id, const std::string& node) {
  return "ferry-" + id + "-" + node;
}

std::optional<Cluster> find(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return std::nullopt;
  UniqueFd dfd = owned::open_dir(dir, "cluster directory");
  if (::faccessat(dfd.get(), kIdFile, F_OK, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  UniqueFd idf = owned::open_file_at(dfd.get(), kIdFile, dir + "/" + kIdFile);
  std::string text = proc::read_file(fmt::format("/proc/self/fd/{}", idf.get()));
  auto lines = proc::split(text, '\n');
  Cluster c;
  c.dir = dir;
  c.id = lines.empty() ? "" : std::string(proc::trim(lines[0]));
  if (c.id.empty() || c.id.size() > 16 ||
      c.id.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail("{}/{} is not a cluster id of ferry's", dir, kIdFile);
  for (size_t i = 1; i < lines.size(); i++) c.made_dir |= proc::trim(lines[i]) == kMadeDir;
  c.nodes = cluster_nodes(dir);
  return c;
}

Cluster prepare(const std::string& dir, const std::vector<std::string>& nodes) {
  fs::create_directories(fs::path(dir).parent_path());
  bool made = false;
  UniqueFd dfd = owned::make_or_open_dir(dir, "cluster directory", &made);
  if (!made) {
    if (auto old = find(dir)) {
      for (auto& n : old->nodes)
        if (node_init(*old, n))
          fail("a cluster already runs in {}; stop it with 'ferry cluster down'", dir);
      tear_down(*old);  // what a crashed cluster left (the directory itself stays)
      made = old->made_dir;
      owned::make_or_open_dir(dir, "cluster directory");
    } else if (has_entries(dir)) {
      fail("{} is not empty and holds no ferry cluster: give an empty directory or a new one",
           dir);
    }
  }
  Cluster c;
  c.dir = dir;
  c.id = make_id(dir);
  c.made_dir = made;
  c.nodes = nodes;
  // The mark first: whatever happens next, `cluster down` knows this is ours to clean.
  write_file(dir + "/" + kIdFile, c.id + "\n" + (made ? std::string(kMadeDir) + "\n" : ""));
  std::string list;
  for (auto& n : nodes) list += n + "\n";
  write_file(dir + "/nodes.list", list);
  return c;
}

void make_network(const Cluster& c) {
  // A bridge in its own namespace, one veth per node (jumbo frames, as in a datacenter network).
  const std::string br = bridge_ns(c.id);
  run({"ip", "netns", "add", br});
  run({"ip", "-n", br, "link", "add", "br0", "mtu", "9000", "type", "bridge"});
  run({"ip", "-n", br, "link", "set", "br0", "up"});
  for (size_t i = 0; i < c.nodes.size(); i++) {
    std::string ns = node_ns(c.id, c.nodes[i]), veth = "v" + std::to_string(i + 1);
    run({"ip", "netns", "add", ns});
    run({"ip", "-n", ns, "link", "set", "lo", "up"});
    run({"ip", "-n", br, "link", "add", veth, "mtu", "9000", "type", "veth", "peer", "name",
         "eth0", "mtu", "9000", "netns", ns});
    run({"ip", "-n", br, "link", "set", veth, "master", "br0"});
    run({"ip", "-n", br, "link", "set", veth, "up"});
    run({"ip", "-n", ns, "addr", "add", ip_of(i) + "/24", "dev", "eth0"});
    run({"ip", "-n", ns, "link", "set", "eth0", "up"});
  }
}

void write_node_configs(const Cluster& c, const std::map<std::string, NodeSettings>& settings) {
  std::string tls = c.dir + "/tls";
  security::ensure_cluster_ca(tls);
  for (size_t i = 0; i < c.nodes.size(); i++) {
    const std::string& name = c.nodes[i];
    auto certs = security::issue_node_cert(tls, name, ip_of(i));
    node::NodeConfig cfg;
    cfg.name = name;
    cfg.listen = ip_of(i) + ":" + std::to_string(kNodePort);
    cfg.data_listen = ip_of(i) + ":" + std::to_string(kDataPort);
    std::string ndir = node_dir(c, name);
    fs::create_directories(ndir);
    cfg.state_dir = ndir + "/state";
    cfg.page_store = c.dir + "/pagestore";  // the host's file system is the nodes' shared one
    cfg.control_socket = ndir + "/control.sock";
    auto s = settings.find(name);
    if (s != settings.end()) {
      cfg.labels = s->second.labels;
      for (auto& [k, v] : s->second.config) node::apply_setting(cfg, k, v);
    }
    cfg.ca_cert = certs.ca_cert;
    cfg.cert = certs.cert;
    cfg.key = certs.key;
    for (size_t j = 0; j < c.nodes.size(); j++)
      if (j != i) cfg.peers.push_back({c.nodes[j], ip_of(j) + ":" + std::to_string(kNodePort)});
    write_file(ndir + "/ferryd.toml", node::render_config(cfg));
    NodeSettings own = s != settings.end() ? s->second : NodeSettings{};
    write_file(ndir + "/init.conf",
               fmt::format("{}\n{}\n{}\n{}\n", own.restart_delay_ms, own.faults, own.capacity.cpus,
                           own.capacity.memory_bytes));
  }
}

void start_node(const Cluster& c, const std::string& node, const NodeSettings& settings) {
  const std::string init = self_dir() + "/ferry-init", ferryd = self_dir() + "/ferryd";
  for (auto& p : {init, ferryd})
    if (::access(p.c_str(), X_OK) != 0) fail("cannot find {} next to ferry", p);
  const std::string ndir = node_dir(c, node), netns = node_ns(c.id, node);
  const std::string config = ndir + "/ferryd.toml", log = ndir + "/ferryd.log";
  const std::string delay = std::to_string(settings.restart_delay_ms);
  make_node_cgroup(c.id, node, settings.capacity);
  const std::vector<std::string> groups = node_cgroup_dirs(c.id, node);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  UniqueFd rd(p[0]), wr(p[1]);
  pid_t mid = ::fork();
  if (mid < 0) fail_errno(errno, "fork");
  if (mid == 0) {
    ::setsid();
    if (!enter_cgroup_dirs(groups)) _exit(100);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) _exit(101);
    if (::unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) _exit(102);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(103);
    pid_t init_pid = ::fork();
    if (init_pid == 0) {
      // A daemon must not keep its starter's pipes open: whoever reads our output would never
      // see EOF.
      ::close_range(3, ~0U, 0);
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
      if (!settings.faults.empty())
        ::setenv("FERRY_TEST_FAULTS", settings.faults.c_str(), 1);
      else
        ::unsetenv("FERRY_TEST_FAULTS");
      ::execl(init.c_str(), "ferry-init", "--node", node.c_str(), "--cluster-id", c.id.c_str(),
              "--restart-delay-ms", delay.c_str(), "--", ferryd.c_str(), "--config",
              config.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    (void)!::write(p[1], &init_pid, sizeof init_pid);
    _exit(init_pid > 0 ? 0 : 104);
  }
  wr.reset();
  pid_t init_pid = -1;
  bool got = ::read(rd.get(), &init_pid, sizeof init_pid) == sizeof init_pid;
  int st = 0;
  ::waitpid(mid, &st, 0);
  if (!got || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || init_pid <= 0)
    fail("cannot start node {} in namespace {} (step {})", node, netns,
         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  write_file(ndir + "/init.pid", std::to_string(init_pid) + "\n");
}

namespace {

// A pidfd of `pid` when /proc shows it is the ferry-init of `node` of cluster `c`, in the node's
// network namespace; an empty fd otherwise.
UniqueFd verified_init(const Cluster& c, const std::string& node, pid_t pid) {
  if (pid <= 1) return {};
  // Held first, checked after: a pidfd cannot come to name another process.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return {};
  std::string exe = proc::try_read_link(proc::path(pid, "exe")).value_or("");
  if (exe.size() > 10 && exe.compare(exe.size() - 10, 10, " (deleted)") == 0)
    exe.resize(exe.size() - 10);  // ferry was rebuilt meanwhile
  if (exe != self_dir() + "/ferry-init") return {};
  std::string cmdline = proc::try_read_file(proc::path(pid, "cmdline")).value_or("");
  if (!cmdline_has(cmdline, "--node", node) || !cmdline_has(cmdline, "--cluster-id", c.id))
    return {};
  struct stat ns_file, ns_proc;
  bool same_ns = ::stat(("/run/netns/" + node_ns(c.id, node)).c_str(), &ns_file) == 0 &&
                 ::stat(proc::path(pid, "ns/net").c_str(), &ns_proc) == 0 &&
                 ns_file.st_ino == ns_proc.st_ino && ns_file.st_dev == ns_proc.st_dev;
  return same_ns ? std::move(pidfd) : UniqueFd();
}

}  // namespace

UniqueFd node_init(const Cluster& c, const std::string& node) {
  // Where init.pid points, if that is it; else wherever it is (init.pid may be stale, lost or
  // changed: it is a hint, never a reason to signal anything).
  if (auto text = proc::try_read_file(node_dir(c, node) + "/init.pid")) {
    try {
      if (UniqueFd fd = verified_init(c, node, static_cast<pid_t>(proc::parse_u64(proc::trim(*text)))))
        return fd;
    } catch (const Error&) {
    }
  }
  for (auto& entry : proc::list_dir("/proc")) {
    if (entry.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string comm = proc::try_read_file("/proc/" + entry + "/comm").value_or("");
    if (comm != "ferry-init\n") continue;
    if (UniqueFd fd = verified_init(c, node, static_cast<pid_t>(proc::parse_u64(entry)))) return fd;
  }
  return {};
}

bool ready(const Cluster& c) {
  for (auto& n : c.nodes) {
    auto channel =
        grpc::CreateChannel("unix:" + control_socket(c.dir, n), grpc::InsecureChannelCredentials());
    auto stub = rpc::Control::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    rpc::NodesReply r;
    if (!stub->Nodes(&ctx, rpc::NodesRequest(), &r).ok()) return false;
    for (auto& node : r.nodes())
      if (node.state() != rpc::NODE_UP) return false;
  }
  return true;
}

void tear_down(const Cluster& c) {
  // The nodes first: killing a node's init ends every process of the node.
  std::vector<UniqueFd> dying;
  for (auto& n : c.nodes)
    if (UniqueFd init = node_init(c, n)) {
      if (::syscall(SYS_pidfd_send_signal, init.get(), SIGKILL, nullptr, 0) == 0)
        dying.push_back(std::move(init));
    }
  for (auto& fd : dying) {
    pollfd p{fd.get(), POLLIN, 0};
    ::poll(&p, 1, 10000);  // readable once it has ended
  }
  remove_cluster_cgroups(c.id);
  for (auto& ns : netns_with_prefix("ferry-" + c.id + "-"))
    if (ns != bridge_ns(c.id)) run({"ip", "netns", "del", ns}, true);
  run({"ip", "netns", "del", bridge_ns(c.id)}, true);
  std::error_code ec;
  for (const char* p : kOurs) fs::remove_all(c.dir + "/" + p, ec);
  if (c.made_dir) fs::remove(c.dir, ec);  // only when empty
  auto cur = proc::try_read_file("/run/ferry/current");
  if (cur && std::string(proc::trim(*cur)) == c.dir) fs::remove("/run/ferry/current", ec);
}

}  // namespace ferry::cli::local
