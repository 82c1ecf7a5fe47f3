// Channels (issue 11): throughput and round trip of a job's channel, on one node and across two,
// against limits measured in the same run: a plain pipe (one node), raw TCP (and TLS 1.3, what
// the daemons' gRPC runs on) between the same two node namespaces; and the delivery pause a
// channel's reader sees while it migrates, against that migration's freeze time.
// Medians of several runs; prints a markdown table (bench/RESULTS.md keeps the latest). Beside
// each ratio of medians, the median of each run's own ratio: raw TCP is measured right before
// and right after the channel across the nodes (their mean is that run's limit), as this VM's
// speed drifts by half within a minute.
//
// usage: channel_bench [--reps 3] [--mib 512] [--pause yes|no] [--capacity SIZE, e.g. 16MiB]
//                      [--read-size BYTES: the reading task's reads, 1 MiB by default]
//        channel_bench --source BYTES | --sink [READ_SIZE] | --ping COUNT | --pong |
//                      --ticker COUNT US | --gaps | --tcp-pong ADDR | --tcp-ping ADDR COUNT | --relay-pong ADDR |
//                      --relay-ping ADDR COUNT   (the tasks and relays it runs)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench_cluster.h"
#include "util/clock.h"

namespace {

using ferry::monotonic_ns;
using ferry::bench::median;
using ferry::bench::Out;
using ferry::bench::run;

bool read_full(int fd, void* p, size_t len) {
  char* c = static_cast<char*>(p);
  while (len > 0) {
    ssize_t n = read(fd, c, len);
    if (n <= 0) return false;
    c += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool write_full(int fd, const void* p, size_t len) {
  const char* c = static_cast<const char*>(p);
  while (len > 0) {
    ssize_t n = write(fd, c, len);
    if (n <= 0) return false;
    c += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// --- the tasks ---------------------------------------------------------------------------------

int source(uint64_t bytes) {
  std::vector<char> buf(1 << 20, 0x5a);
  for (uint64_t sent = 0; sent < bytes;) {
    size_t len = std::min<uint64_t>(buf.size(), bytes - sent);
    if (!write_full(1, buf.data(), len)) return 1;
    sent += len;
  }
  return 0;
}

// Prints "BYTES MS": what it read, and the time from the first byte to the end.
int sink(size_t bs = 1 << 20) {
  std::vector<char> buf(bs);
  uint64_t total = 0, first = 0;
  for (;;) {
    ssize_t n = read(0, buf.data(), buf.size());
    if (n <= 0) break;
    if (total == 0) first = monotonic_ns();
    total += static_cast<uint64_t>(n);
  }
  std::printf("%llu %.3f\n", static_cast<unsigned long long>(total),
              static_cast<double>(monotonic_ns() - first) / 1e6);
  return 0;
}

// Round trips of one byte over (in, out); prints the median in microseconds.
double ping_pong(int in, int out, int count) {
  std::vector<double> us;
  char c = 'p';
  for (int i = 0; i < count + 100; i++) {
    uint64_t t = monotonic_ns();
    if (!write_full(out, &c, 1) || !read_full(in, &c, 1)) return -1;
    if (i >= 100) us.push_back(static_cast<double>(monotonic_ns() - t) / 1e3);
  }
  return median(us);
}

int pong(int in, int out) {
  char c;
  while (read_full(in, &c, 1))
    if (!write_full(out, &c, 1)) return 1;
  return 0;
}

// COUNT sequence numbers, one every US microseconds.
int ticker(uint64_t count, long us) {
  for (uint64_t seq = 0; seq < count; seq++) {
    if (!write_full(1, &seq, sizeof seq)) return 1;
    std::this_thread::sleep_for(std::chrono::microseconds(us));
  }
  return 0;
}

// Prints "COUNT MAX_GAP_MS IN_ORDER": the records read, the longest wait between two, and
// whether every sequence number came once, in order.
int gaps() {
  uint64_t seq, expect = 0, last = 0, worst = 0;
  bool in_order = true;
  while (read_full(0, &seq, sizeof seq)) {
    uint64_t now = monotonic_ns();
    if (expect > 0) worst = std::max(worst, now - last);
    last = now;
    in_order = in_order && seq == expect;
    expect++;
  }
  std::printf("%llu %.3f %d\n", static_cast<unsigned long long>(expect),
              static_cast<double>(worst) / 1e6, in_order ? 1 : 0);
  return 0;
}

sockaddr_in address(const std::string& addr) {
  auto colon = addr.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &a.sin_addr);
  return a;
}

int tcp_socket() {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}

// The one connection accepted at ADDR (-1 when none could be).
int accept_one(const std::string& addr) {
  sockaddr_in a = address(addr);
  int l = tcp_socket();
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) || listen(l, 1)) return -1;
  int c = accept(l, nullptr, nullptr);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  close(l);
  return c;
}

// A connection to ADDR, tried for up to 5 s while its other side starts (-1 when none came).
int connect_to(const std::string& addr) {
  sockaddr_in a = address(addr);
  int s = tcp_socket();
  for (int i = 0; connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0; i++) {
    close(s);
    if (i > 500) return -1;
    s = tcp_socket();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return s;
}

int tcp_pong(const std::string& addr) {
  int c = accept_one(addr);
  return c < 0 ? 1 : pong(c, c);
}

int tcp_ping(const std::string& addr, int count) {
  int s = connect_to(addr);
  if (s < 0) return 1;
  std::printf("%.2f\n", ping_pong(s, s, count));
  return 0;
}

// The floor of a channel across nodes whose data goes through a daemon on each node: a task's
// pipe, a relay process, TCP, a relay process, a task's pipe, and back, with nothing else (no
// framing, no authentication, no flow control). Each relay moves each direction on its own
// thread, as a node's daemon does; `task` runs in a child on the relay's pipes.
int relay(int sock, const std::function<int(int in, int out)>& task) {
  int to_task[2], from_task[2];
  if (pipe(to_task) != 0 || pipe(from_task) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(to_task[1]);
    close(from_task[0]);
    close(sock);
    _exit(task(to_task[0], from_task[1]));
  }
  close(to_task[0]);
  close(from_task[1]);
  auto copy = [](int in, int out, bool then_shut) {
    char buf[65536];
    for (ssize_t n; (n = read(in, buf, sizeof buf)) > 0;)
      if (!write_full(out, buf, static_cast<size_t>(n))) break;
    if (then_shut)
      shutdown(out, SHUT_WR);  // (the other relay's task sees the end)
    else
      close(out);
  };
  std::thread out_thread(copy, from_task[0], sock, true);
  copy(sock, to_task[1], false);
  out_thread.join();
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int relay_pong(const std::string& addr) {
  int c = accept_one(addr);
  return c < 0 ? 1 : relay(c, [](int in, int out) { return pong(in, out); });
}

int relay_ping(const std::string& addr, int count) {
  int s = connect_to(addr);
  if (s < 0) return 1;
  return relay(s, [count](int in, int out) {
    std::printf("%.2f\n", ping_pong(in, out, count));
    std::fflush(stdout);
    return 0;
  });
}

// --- the measurements --------------------------------------------------------------------------

struct Bench {
  ferry::bench::BenchCluster& cluster;
  std::string self, dir;
  std::string capacity;  // of every channel; empty: the job file's default
  size_t read_size;      // what the reading task asks for at once
  int job_count = 0;

  // Runs a job of two tasks (a on node_a, b on node_b, a:1 -> b:0, and b:1 -> a:0 when `back`),
  // waits for it and returns the log of the task named `report`.
  std::string job(const std::string& a_args, const std::string& node_a, const std::string& b_args,
                  const std::string& node_b, bool back, const std::string& report,
                  const std::function<void(const std::string&)>& meanwhile = {}) {
    std::string name = "b" + std::to_string(++job_count);
    std::string file = dir + "/" + name + ".yaml";
    std::ofstream(file) << "tasks:\n  - name: a\n    node: " << node_a << "\n    command: [" << self
                        << ", " << a_args << "]\n  - name: b\n    node: " << node_b
                        << "\n    command: [" << self << ", " << b_args
                        << "]\nchannels:\n  - from: a:1\n    to: b:0\n"
                        << (capacity.empty() ? "" : "    capacity: " + capacity + "\n")
                        << (back ? "  - from: b:1\n    to: a:0\n" : "")
                        << (back && !capacity.empty() ? "    capacity: " + capacity + "\n" : "");
    Out r = cluster.ferry({"job", "run", file, "--name", name});
    if (r.status != 0) return "";
    if (meanwhile) meanwhile(name);
    cluster.ferry({"job", "wait", name, "--timeout", "300"});
    return cluster.ferry({"logs", name + "/" + report}).out;
  }

  double channel_mb_s(const std::string& node_a, const std::string& node_b, uint64_t bytes) {
    std::string log = job("--source, \"" + std::to_string(bytes) + "\"", node_a,
                          "--sink, \"" + std::to_string(read_size) + "\"", node_b, false, "b");
    unsigned long long got = 0;
    double ms = 0;
    if (std::sscanf(log.c_str(), "%llu %lf", &got, &ms) != 2 || got != bytes || ms <= 0) return 0;
    return static_cast<double>(bytes) / ms / 1e3;
  }

  double pipe_mb_s(uint64_t bytes) {
    Out r = run({"/bin/sh", "-c",
                 self + " --source " + std::to_string(bytes) + " | " + self + " --sink " +
                     std::to_string(read_size)});
    unsigned long long got = 0;
    double ms = 0;
    if (std::sscanf(r.out.c_str(), "%llu %lf", &got, &ms) != 2 || got != bytes) return 0;
    return static_cast<double>(bytes) / ms / 1e3;
  }

  double tcp_mb_s(uint64_t bytes, const std::string& tls) {
    std::string addr = "10.213.0.2:7998";
    std::string mb = cluster.bin() + "/migrate_bench";
    pid_t server = fork();
    if (server == 0) {
      execlp("ip", "ip", "netns", "exec", cluster.netns("node2").c_str(), mb.c_str(),
             "--stream-server", addr.c_str(), std::to_string(bytes).c_str(), tls.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    Out c = run({"ip", "netns", "exec", cluster.netns("node1"), mb, "--stream-client", addr,
                 std::to_string(bytes), tls});
    waitpid(server, nullptr, 0);
    double ms = std::atof(c.out.c_str());
    return ms > 0 ? static_cast<double>(bytes) / ms / 1e3 : 0;
  }

  double channel_rtt_us(const std::string& node_b) {
    std::string log = job("--ping, \"2000\"", "node1", "--pong", node_b, true, "a");
    return std::atof(log.c_str());
  }

  // A round trip between node1's and node2's namespaces: `mode`-pong at ADDR in node2,
  // `mode`-ping in node1, which prints the median.
  double rtt_us(const std::string& mode, const std::string& addr) {
    pid_t server = fork();
    if (server == 0) {
      execlp("ip", "ip", "netns", "exec", cluster.netns("node2").c_str(), self.c_str(),
             ("--" + mode + "-pong").c_str(), addr.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    Out c = run(
        {"ip", "netns", "exec", cluster.netns("node1"), self, "--" + mode + "-ping", addr, "2000"});
    waitpid(server, nullptr, 0);
    return std::atof(c.out.c_str());
  }
  double tcp_rtt_us() { return rtt_us("tcp", "10.213.0.2:7997"); }
  double relay_rtt_us() { return rtt_us("relay", "10.213.0.2:7996"); }

  // The reader (on node2) moves to node1 while a tick arrives every ms: the longest wait between
  // two ticks it saw, less the tick interval, and the migration's freeze.
  struct Pause {
    double pause_ms = 0, freeze_ms = 0;
    bool in_order = false;
  };
  Pause reader_pause(const std::string& strategy) {
    Pause p;
    std::string log = job("--ticker, \"4000\", \"1000\"", "node1", "--gaps", "node2", false, "b",
                          [&](const std::string& name) {
                            std::this_thread::sleep_for(std::chrono::milliseconds(1500));
                            Out m = cluster.ferry({"migrate", name + "/b", "--to", "node1",
                                                   "--strategy", strategy, "--json"});
                            auto j = nlohmann::json::parse(m.out, nullptr, false);
                            if (j.is_object()) p.freeze_ms = j.value("freeze_ms", 0.0);
                          });
    unsigned long long count = 0;
    double worst = 0;
    int in_order = 0;
    if (std::sscanf(log.c_str(), "%llu %lf %d", &count, &worst, &in_order) == 3) {
      p.pause_ms = std::max(0.0, worst - 1.0);
      p.in_order = in_order == 1 && count == 4000;
    }
    return p;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--source" && argc == 3) return source(std::stoull(argv[2]));
  if (mode == "--sink" && argc == 3) return sink(std::stoull(argv[2]));
  if (mode == "--sink") return sink();
  if (mode == "--ping" && argc == 3) {
    double us = ping_pong(0, 1, std::atoi(argv[2]));
    std::fprintf(stderr, "%.2f\n", us);  // (stdout is the channel)
    return us < 0;
  }
  if (mode == "--pong") return pong(0, 1);
  if (mode == "--ticker" && argc == 4) return ticker(std::stoull(argv[2]), std::atol(argv[3]));
  if (mode == "--gaps") return gaps();
  if (mode == "--tcp-pong" && argc == 3) return tcp_pong(argv[2]);
  if (mode == "--tcp-ping" && argc == 4) return tcp_ping(argv[2], std::atoi(argv[3]));
  if (mode == "--relay-pong" && argc == 3) return relay_pong(argv[2]);
  if (mode == "--relay-ping" && argc == 4) return relay_ping(argv[2], std::atoi(argv[3]));
  int reps = 3;
  uint64_t mib = 512;
  bool pauses = true;
  std::string capacity;
  size_t read_size = 1 << 20;
  std::string pause = "yes";
  CLI::App app{"Channels: throughput and round trip against a pipe and raw TCP; delivery pauses"};
  app.add_option("--reps", reps, "runs of each measurement")->capture_default_str();
  app.add_option("--mib", mib, "MiB per transfer")->capture_default_str();
  app.add_option("--pause", pause, "measure the delivery pause while a reader migrates")
      ->check(CLI::IsMember({"yes", "no"}))
      ->capture_default_str();
  app.add_option("--capacity", capacity, "the channels' capacity (e.g. 16MiB)");
  app.add_option("--read-size", read_size, "what the reading task reads at once (bytes)")
      ->check(CLI::Range(size_t{1}, size_t{64} << 20))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  pauses = pause == "yes";
  std::string dir = "/var/tmp/ferry-channel-bench";
  ferry::bench::BenchCluster cluster(dir);
  if (!cluster.up()) {
    std::fprintf(stderr, "cluster up failed\n");
    return 1;
  }
  ferry::bench::JobFilesDir job_files(dir + "-jobs");
  const std::string& jobs = job_files.path();
  Bench b{cluster, cluster.bin() + "/channel_bench", jobs, capacity, read_size};
  uint64_t bytes = mib << 20;
  std::vector<double> pipe, same, tcp, tls, across, rtt_tcp, rtt_same, rtt_across, rtt_relay;
  std::vector<double> same_ratio, across_ratio, rtt_same_ratio, rtt_across_ratio;
  std::vector<double> rtt_relay_ratio, rtt_across_of_relay;
  for (int r = 0; r < reps; r++) {
    pipe.push_back(b.pipe_mb_s(bytes));
    same.push_back(b.channel_mb_s("node1", "node1", bytes));
    same_ratio.push_back(same.back() / pipe.back());
    tls.push_back(b.tcp_mb_s(bytes, dir + "/tls"));
    double tcp_before = b.tcp_mb_s(bytes, "");
    across.push_back(b.channel_mb_s("node1", "node2", bytes));
    double tcp_after = b.tcp_mb_s(bytes, "");
    tcp.push_back(tcp_before);
    tcp.push_back(tcp_after);
    across_ratio.push_back(across.back() / ((tcp_before + tcp_after) / 2));
    rtt_tcp.push_back(b.tcp_rtt_us());
    rtt_same.push_back(b.channel_rtt_us("node1"));
    rtt_across.push_back(b.channel_rtt_us("node2"));
    rtt_same_ratio.push_back(rtt_same.back() / rtt_tcp.back());
    rtt_across_ratio.push_back(rtt_across.back() / rtt_tcp.back());
    rtt_relay.push_back(b.relay_rtt_us());
    rtt_relay_ratio.push_back(rtt_relay.back() / rtt_tcp.back());
    rtt_across_of_relay.push_back(rtt_across.back() / rtt_relay.back());
  }
  std::printf(
      "| %llu MiB through | MB/s | of its limit | each run's own, median |\n"
      "|---|---|---|---|\n",
      static_cast<unsigned long long>(mib));
  std::printf("| a pipe (the one-node limit) | %.0f | | |\n", median(pipe));
  std::printf("| a channel, both ends on one node | %.0f | %.2f of the pipe | %.2f |\n",
              median(same), median(same) / median(pipe), median(same_ratio));
  std::printf("| raw TCP between the two nodes (the limit) | %.0f | | |\n", median(tcp));
  std::printf("| TLS 1.3 between them (mutual auth) | %.0f | %.2f of TCP | |\n", median(tls),
              median(tls) / median(tcp));
  std::printf("| a channel across the two nodes | %.0f | %.2f of TCP | %.2f |\n\n", median(across),
              median(across) / median(tcp), median(across_ratio));
  std::printf(
      "| one-byte round trip | µs | of raw TCP | each run's own, median |\n"
      "|---|---|---|---|\n");
  std::printf("| raw TCP between the nodes | %.1f | | |\n", median(rtt_tcp));
  std::printf("| two channels, one node | %.1f | %.1f× | %.1f× |\n", median(rtt_same),
              median(rtt_same) / median(rtt_tcp), median(rtt_same_ratio));
  std::printf("| two channels, across the nodes | %.1f | %.1f× | %.1f× |\n", median(rtt_across),
              median(rtt_across) / median(rtt_tcp), median(rtt_across_ratio));
  std::printf(
      "| a bare relay across the nodes (pipe, relay process, TCP, relay process, pipe; the floor "
      "of daemon-relayed data) | %.1f | %.1f× | %.1f× |\n",
      median(rtt_relay), median(rtt_relay) / median(rtt_tcp), median(rtt_relay_ratio));
  std::printf("| two channels across, against the bare relay | | %.2f× of the relay | %.2f× |\n\n",
              median(rtt_across) / median(rtt_relay), median(rtt_across_of_relay));
  if (!pauses) return 0;
  std::printf(
      "| reader migrates (tick every 1 ms) | freeze ms | delivery pause ms | pause - "
      "freeze | every tick once, in order |\n|---|---|---|---|---|\n");
  for (const char* strategy : {"eager-all", "pre-copy", "copy-on-reference"}) {
    std::vector<double> freeze, pause;
    bool all_in_order = true;
    for (int r = 0; r < reps; r++) {
      auto p = b.reader_pause(strategy);
      freeze.push_back(p.freeze_ms);
      pause.push_back(p.pause_ms);
      all_in_order = all_in_order && p.in_order;
    }
    std::printf("| %s | %.1f | %.1f | %.1f | %s |\n", strategy, median(freeze), median(pause),
                median(pause) - median(freeze), all_in_order ? "yes" : "NO");
  }
  return 0;
}
