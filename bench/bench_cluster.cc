#include "bench_cluster.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "util/proc.h"

extern char** environ;

namespace ferry::bench {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

Out run(const std::vector<std::string>& argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  std::vector<char*> a;
  for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  if (rc != 0) {
    close(p[0]);
    throw std::runtime_error("cannot run " + argv[0]);
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, out};
}

BenchCluster::BenchCluster(const std::string& dir, const std::vector<std::string>& up_args)
    : dir_(dir) {
  bin_ = std::filesystem::canonical("/proc/self/exe").parent_path();
  run({bin_ + "/ferry", "cluster", "down", "--dir", dir_});
  std::vector<std::string> up{bin_ + "/ferry", "cluster", "up", "--dir", dir_};
  up.insert(up.end(), up_args.begin(), up_args.end());
  up_ = run(up).status == 0;
  if (up_) {
    id_ = read_text(dir_ + "/cluster.id");
    id_ = id_.substr(0, id_.find('\n'));
  }
}

BenchCluster::~BenchCluster() {
  run({bin_ + "/ferry", "cluster", "down", "--dir", dir_});
}

Out BenchCluster::ferry(std::vector<std::string> args) {
  args.insert(args.begin(), {bin_ + "/ferry", "--cluster", dir_});
  return run(args);
}

std::string BenchCluster::start_task(int mib, double write_mb_s) {
  std::vector<std::string> args{
      "run", "--on", "node1", "--", bin_ + "/bench_target", std::to_string(mib), "4k"};
  if (write_mb_s > 0) args.push_back(std::to_string(write_mb_s));
  Out started = ferry(args);
  std::string task = started.out.substr(0, started.out.find('\n'));
  for (int i = 0; i < 3000 && ferry({"logs", task}).out.find("0x") == std::string::npos; i++)
    usleep(10000);
  return task;
}

std::string BenchCluster::netns(const std::string& node) const {
  return "ferry-" + id_ + "-" + node;
}

pid_t BenchCluster::host_pid(const std::string& node, int ns_pid) const {
  pid_t init =
      static_cast<pid_t>(std::atol(read_text(dir_ + "/nodes/" + node + "/init.pid").c_str()));
  return ferry::proc::pid_in_namespace_of(init, ns_pid);
}

pid_t BenchCluster::ferryd_pid(const std::string& node) {
  Out r = ferry({"--node", node, "nodes", "--json"});
  if (r.status != 0) return -1;
  for (auto& n : nlohmann::json::parse(r.out))
    if (n["name"] == node) return host_pid(node, n["ferryd_pid"].get<int>());
  return -1;
}

JobFilesDir::JobFilesDir(std::string path) : path_(std::move(path)) {
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

JobFilesDir::~JobFilesDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Resources resources_of(pid_t pid) {
  Resources r;
  std::string status = read_text("/proc/" + std::to_string(pid) + "/status");
  auto field = [&](const char* key) -> uint64_t {
    auto at = status.find(key);
    return at == std::string::npos ? 0 : std::stoull(status.substr(at + std::strlen(key)));
  };
  r.threads = field("Threads:");
  r.rss_kib = field("VmRSS:");
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    r.fds++;
    std::error_code ec;
    std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (target.find(" (deleted)") != std::string::npos) r.deleted_files++;
  }
  return r;
}

uint64_t resident_private_bytes(pid_t pid) {
  std::string status = read_text("/proc/" + std::to_string(pid) + "/status");
  uint64_t total = 0;
  for (const char* key : {"RssAnon:", "RssShmem:"}) {
    auto at = status.find(key);
    if (at != std::string::npos) total += std::stoull(status.substr(at + std::strlen(key))) * 1024;
  }
  return total;
}

std::string BenchCluster::targets() const {
  return std::filesystem::path(bin_).parent_path().string() + "/tests/targets";
}

void BenchCluster::keep_logs(const std::string& to) const {
  std::error_code ec;
  std::filesystem::create_directories(to, ec);
  for (auto& node : std::filesystem::directory_iterator(dir_ + "/nodes", ec))
    std::filesystem::copy_file(node.path() / "ferryd.log",
                               to + "/" + node.path().filename().string() + ".log",
                               std::filesystem::copy_options::overwrite_existing, ec);
}

}  // namespace ferry::bench
