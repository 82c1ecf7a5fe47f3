// Eager-all migration of a task holding 64 MiB .. 1 GiB of touched anonymous memory (4 KiB
// pages) between two node namespaces of a local cluster, against limits measured in the same run:
//   raw TCP:  bytes/s of a plain TCP stream between the same two namespaces;
//   populate: first touch of the same amount of fresh memory.
// Medians of several runs; prints a markdown table (bench/RESULTS.md keeps the latest).
//
// usage: migrate_bench [--sizes 64,512,1024] [--reps 3]
//        migrate_bench --tcp-server ADDR BYTES | --tcp-client ADDR BYTES   (used internally)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/clock.h"

extern char** environ;

namespace {

using ferry::Stopwatch;
namespace fs = std::filesystem;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Out {
  int status;
  std::string out;
};

Out run(const std::vector<std::string>& argv) {
  int p[2];
  if (pipe2(p, O_CLOEXEC)) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addclose(&fa, p[0]);
  std::vector<char*> a;
  for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ) != 0)
    throw std::runtime_error("spawn " + argv[0]);
  close(p[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, out};
}

int tcp_mode(bool server, const std::string& addr, uint64_t bytes) {
  auto colon = addr.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &a.sin_addr);
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1, big = 16 << 20;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  size_t chunk = 4 << 20;
  std::vector<char> buf(chunk, 7);
  if (server) {
    bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(s, 1);
    int c = accept(s, nullptr, nullptr);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    uint64_t got = 0;
    ssize_t n;
    while ((n = read(c, buf.data(), chunk)) > 0) got += static_cast<uint64_t>(n);
    return got == bytes ? 0 : 1;
  }
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  for (int i = 0; i < 100 && connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0; i++)
    usleep(20000);
  Stopwatch sw;
  uint64_t sent = 0;
  while (sent < bytes) {
    ssize_t n = write(s, buf.data(), std::min<uint64_t>(chunk, bytes - sent));
    if (n <= 0) return 1;
    sent += static_cast<uint64_t>(n);
  }
  shutdown(s, SHUT_WR);
  char c;
  (void)read(s, &c, 1);  // the server closes once it has everything
  std::printf("%.3f\n", sw.elapsed_ms());
  return 0;
}

double raw_tcp_gbps(const std::string& self, const std::string& ns_a, const std::string& ns_b,
                    uint64_t bytes) {
  std::string addr = "10.213.0.2:7999";
  pid_t server = fork();
  if (server == 0) {
    execlp("ip", "ip", "netns", "exec", ns_b.c_str(), self.c_str(), "--tcp-server", addr.c_str(),
           std::to_string(bytes).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  usleep(200000);
  Out c = run({"ip", "netns", "exec", ns_a, self, "--tcp-client", addr, std::to_string(bytes)});
  waitpid(server, nullptr, 0);
  double ms = std::atof(c.out.c_str());
  return ms > 0 ? static_cast<double>(bytes) / ms / 1e6 : 0;
}

double populate_ms(uint64_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(p, len, MADV_NOHUGEPAGE);
  char* c = static_cast<char*>(p);
  Stopwatch sw;
  for (uint64_t off = 0; off < len; off += 4096) c[off] = 1;
  double ms = sw.elapsed_ms();
  munmap(p, len);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--tcp-server")
    return tcp_mode(true, argv[2], std::stoull(argv[3]));
  if (argc == 4 && std::string(argv[1]) == "--tcp-client")
    return tcp_mode(false, argv[2], std::stoull(argv[3]));
  std::vector<int> sizes{64, 512, 1024};
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--reps") reps = std::atoi(argv[i + 1]);
    if (a == "--sizes") {
      sizes.clear();
      std::string s = argv[i + 1];
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        sizes.push_back(std::atoi(s.substr(p, q - p).c_str()));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    }
  }
  std::string bin = fs::path(fs::canonical("/proc/self/exe")).parent_path();
  std::string ferry = bin + "/ferry", target = bin + "/bench_target", self = bin + "/migrate_bench";
  std::string dir = "/var/tmp/ferry-migrate-bench";
  run({ferry, "cluster", "down", "--dir", dir});
  if (run({ferry, "cluster", "up", "--nodes", "2", "--dir", dir}).status != 0) {
    std::fprintf(stderr, "cluster up failed\n");
    return 1;
  }
  std::string id = run({"cat", dir + "/cluster.id"}).out;
  std::string ns1 = "ferry-" + id + "-node1", ns2 = "ferry-" + id + "-node2";
  auto f = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {ferry, "--cluster", dir});
    return run(args);
  };
  std::printf(
      "| memory | freeze ms | total ms | page stream GB/s | raw TCP GB/s | stream / raw | populate "
      "ms | total / (bytes/raw + populate) |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (int mib : sizes) {
    uint64_t len = static_cast<uint64_t>(mib) << 20;
    std::vector<double> freeze, total, stream, raw, pop, ratio;
    for (int r = 0; r < reps; r++) {
      double raw_gbps = raw_tcp_gbps(self, ns1, ns2, std::max<uint64_t>(len, 256ull << 20));
      double pop_ms = populate_ms(len);
      Out started = f({"run", "--on", "node1", "--", target, std::to_string(mib), "4k"});
      std::string task = started.out.substr(0, started.out.find('\n'));
      for (int i = 0; i < 2000 && f({"logs", task}).out.find("0x") == std::string::npos; i++)
        usleep(10000);
      Out m = f({"migrate", task, "--to", "node2", "--json"});
      f({"kill", task, "KILL"});
      if (m.status != 0) {
        std::fprintf(stderr, "migration failed: %s\n", m.out.c_str());
        continue;
      }
      auto j = nlohmann::json::parse(m.out);
      double bytes = j["bytes_sent"].get<double>();
      raw.push_back(raw_gbps);
      pop.push_back(pop_ms);
      freeze.push_back(j["freeze_ms"].get<double>());
      total.push_back(j["total_ms"].get<double>());
      stream.push_back(bytes / j["transfer_ms"].get<double>() / 1e6);
      ratio.push_back(j["total_ms"].get<double>() / (bytes / (raw_gbps * 1e6) + pop_ms));
    }
    std::printf("| %d MiB | %.1f | %.1f | %.2f | %.2f | %.2f | %.1f | %.2f |\n", mib,
                median(freeze), median(total), median(stream), median(raw),
                median(stream) / median(raw), median(pop), median(ratio));
    std::fflush(stdout);
  }
  run({ferry, "cluster", "down", "--dir", dir});
  return 0;
}
