#include "channel_soak.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/byte_pattern.h"
#include "transfer/strategy.h"
#include "util/clock.h"

namespace ferry::bench {
namespace {

// Writes of these sizes in turn: items of every size on the way, and boundaries that fall
// anywhere in a word of the pattern.
constexpr size_t kWriteSizes[] = {1 << 20, 65537, 4093, 300007, 131072, 17, 524288};

}  // namespace

int pattern_source(uint64_t bytes, uint64_t seed) {
  std::vector<char> buf(1 << 20);
  size_t turn = 0;
  for (uint64_t sent = 0; sent < bytes;) {
    size_t len = std::min<uint64_t>(kWriteSizes[turn++ % std::size(kWriteSizes)], bytes - sent);
    test::pattern_at(seed, sent, buf.data(), len);
    for (size_t done = 0; done < len;) {
      ssize_t n = ::write(1, buf.data() + done, len - done);
      if (n <= 0) return 1;
      done += static_cast<size_t>(n);
    }
    sent += len;
  }
  return 0;
}

int pattern_sink(uint64_t bytes, uint64_t seed) {
  std::vector<char> got(1 << 20), want(1 << 20);
  uint64_t total = 0, first = 0;
  int64_t bad_at = -1;
  std::string wrong;
  for (;;) {
    ssize_t n = ::read(0, got.data(), got.size());
    if (n <= 0) break;
    if (total == 0) first = monotonic_ns();
    if (bad_at < 0) {
      test::pattern_at(seed, total, want.data(), static_cast<size_t>(n));
      if (std::memcmp(got.data(), want.data(), static_cast<size_t>(n)) != 0) {
        size_t i = 0;
        while (got[i] == want[i]) i++;
        bad_at = static_cast<int64_t>(total + i);
        wrong = fmt::format("{} (in a read of {} bytes at {})",
                            test::tell_wrong(seed, got.data() + i, static_cast<size_t>(n) - i,
                                             total + i, 64ull << 20),
                            n, total);
      }
    }
    total += static_cast<uint64_t>(n);
  }
  std::printf("%llu %.3f %lld\n", static_cast<unsigned long long>(total),
              static_cast<double>(monotonic_ns() - first) / 1e6, static_cast<long long>(bad_at));
  if (!wrong.empty()) std::printf("%s\n", wrong.c_str());
  return total == bytes && bad_at < 0 ? 0 : 2;
}

namespace {

struct SoakRow {
  int transfer = 0;
  double seconds = 0;
  int moved = 0, refused = 0;
  std::vector<double> freeze_ms;  // of the migrations that moved an end
  // Snapshots taken meanwhile (--snapshots): complete and consistent, failed (the reasons),
  // and complete but inconsistent (never: a fault).
  int snapshots_consistent = 0, snapshots_inconsistent = 0;
  std::map<std::string, int> snapshot_failures;
  std::string result;
  Resources node[2];
};

struct Transfer {
  BenchCluster& cluster;
  const ChannelSoakOptions& options;
  const std::vector<std::string>& strategies;
  int& migration_count;  // across transfers: the strategies go round

  SoakRow run(int number) {
    SoakRow row;
    row.transfer = number;
    std::string name = "soak" + std::to_string(number);
    std::string file = options.job_dir + "/" + name + ".yaml";
    uint64_t seed = test::splitmix64(static_cast<uint64_t>(number));
    std::ofstream(file) << "tasks:\n  - name: a\n    node: node1\n    command: [" << options.self
                        << ", --pattern-source, \"" << options.bytes << "\", \"" << seed
                        << "\"]\n  - name: b\n    node: node2\n    command: [" << options.self
                        << ", --pattern-sink, \"" << options.bytes << "\", \"" << seed
                        << "\"]\nchannels:\n  - from: a:1\n    to: b:0\n";
    if (cluster.ferry({"job", "run", file, "--name", name}).status != 0) {
      row.result = "not started";
      return row;
    }
    // A stall is a transfer slower than 50 MB/s plus a minute.
    const int timeout_s = static_cast<int>(options.bytes / (50 << 20)) + 60;
    auto start = std::chrono::steady_clock::now();
    auto waited = std::async(std::launch::async, [&] {
      return cluster.ferry({"job", "wait", name, "--timeout", std::to_string(timeout_s)});
    });
    std::atomic<bool> over{false};
    std::future<void> snapshots;
    if (options.snapshots)
      snapshots = std::async(std::launch::async, [&] { snapshot_while(name, over, row); });
    std::map<std::string, std::string> where{{"a", "node1"}, {"b", "node2"}};
    std::string moves;
    const auto every = std::chrono::milliseconds(options.every_ms);
    for (int turn = 0; waited.wait_for(every) == std::future_status::timeout; turn++) {
      std::string end = turn % 2 ? "b" : "a";
      std::string to = where[end] == "node1" ? "node2" : "node1";
      const std::string& strategy = strategies[migration_count++ % strategies.size()];
      Out m = cluster.ferry(
          {"migrate", name + "/" + end, "--to", to, "--strategy", strategy, "--json"});
      moves += end + " -> " + to + " " + strategy + " (" + std::to_string(m.status) + "): " +
               m.out.substr(0, m.out.find('\n')) + "\n";
      if (m.status == 0) {
        where[end] = to;
        row.moved++;
        auto report = nlohmann::json::parse(m.out, nullptr, false);
        if (report.is_object()) row.freeze_ms.push_back(report.value("freeze_ms", 0.0));
      } else {
        row.refused++;  // (the task may have ended meanwhile)
      }
    }
    Out wait = waited.get();
    over = true;
    if (snapshots.valid()) snapshots.get();
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    row.result = verdict(name, wait, row.seconds >= timeout_s);
    if (row.result != "ok") {
      // What the nodes said, and which moves were made, for whoever looks into it.
      const std::string kept = "/var/tmp/ferry-soak-failed/" + name;
      cluster.keep_logs(kept);
      std::ofstream(kept + "/moves.txt") << moves;
      std::ofstream(kept + "/sink.log") << cluster.ferry({"logs", name + "/b"}).out;
      std::fprintf(stderr, "transfer %d: %s; the nodes' logs are in %s\n", number,
                   row.result.c_str(), kept.c_str());
    }
    return row;
  }

  // Snapshots of the job, one after the other, until `over`: each checked, then removed.
  void snapshot_while(const std::string& job, const std::atomic<bool>& over, SoakRow& row) {
    while (!over) {
      Out s = cluster.ferry({"snapshot", job, "--json"});
      auto report = nlohmann::json::parse(s.out, nullptr, false);
      if (!report.is_object()) {
        row.snapshot_failures["no report (ferry snapshot said why on stderr)"]++;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      std::string state = report.value("state", "");
      if (state == "complete" && report.value("consistent", false))
        row.snapshots_consistent++;
      else if (state == "complete")
        row.snapshots_inconsistent++;
      else
        row.snapshot_failures[report.value("reason", state)]++;
      cluster.ferry({"snapshot", "rm", report.value("id", "")});
    }
  }

  std::string verdict(const std::string& name, const Out& wait, bool timed_out) {
    if (timed_out) {
      std::printf("transfer %s stalled; its job:\n%s\n", name.c_str(),
                  cluster.ferry({"job", "show", name}).out.c_str());
      cluster.ferry({"job", "kill", name, "KILL"});
      cluster.ferry({"job", "wait", name, "--timeout", "30"});
      return "stalled";
    }
    unsigned long long got = 0;
    double ms = 0;
    long long bad_at = -1;
    std::string log = cluster.ferry({"logs", name + "/b"}).out;
    if (std::sscanf(log.c_str(), "%llu %lf %lld", &got, &ms, &bad_at) != 3)
      return "no report (job wait: " + std::to_string(wait.status) + ")";
    if (bad_at >= 0) return "wrong byte at " + std::to_string(bad_at);
    if (got != options.bytes) return "short: " + std::to_string(got) + " bytes";
    if (wait.status != 0) return "job failed (" + std::to_string(wait.status) + ")";
    return "ok";
  }
};

}  // namespace

int channel_soak(BenchCluster& cluster, const ChannelSoakOptions& options) {
  const std::vector<std::string> strategies = transfer::strategy_name_list();
  const char* nodes[] = {"node1", "node2"};
  pid_t ferryd[2] = {cluster.ferryd_pid(nodes[0]), cluster.ferryd_pid(nodes[1])};
  int migration_count = 0, failed = 0;
  Transfer transfer{cluster, options, strategies, migration_count};
  std::map<std::string, int> snapshot_failures;
  std::printf(
      "| transfer | s | MB/s | ends moved (refused) | freeze ms, median | snapshots consistent / "
      "failed / inconsistent | delivered | ferryd RSS MiB (node1 / node2) | threads | fds "
      "|\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (int t = 1; t <= options.transfers; t++) {
    SoakRow r = transfer.run(t);
    for (int n = 0; n < 2; n++) r.node[n] = resources_of(ferryd[n]);
    int failed_snapshots = 0;
    for (auto& [reason, count] : r.snapshot_failures) {
      snapshot_failures[reason] += count;
      failed_snapshots += count;
    }
    if (r.result != "ok" || r.snapshots_inconsistent > 0) failed++;
    std::printf(
        "| %d | %.1f | %.0f | %d (%d) | %.1f | %d / %d / %d | %s | %.1f / %.1f | %llu / %llu | "
        "%llu / %llu |\n",
        r.transfer, r.seconds, static_cast<double>(options.bytes) / r.seconds / 1e6, r.moved,
        r.refused, median(r.freeze_ms), r.snapshots_consistent, failed_snapshots,
        r.snapshots_inconsistent, r.result.c_str(), r.node[0].rss_kib / 1024.0,
        r.node[1].rss_kib / 1024.0, static_cast<unsigned long long>(r.node[0].threads),
        static_cast<unsigned long long>(r.node[1].threads),
        static_cast<unsigned long long>(r.node[0].fds),
        static_cast<unsigned long long>(r.node[1].fds));
    std::fflush(stdout);
  }
  for (auto& [reason, count] : snapshot_failures)
    std::printf("snapshots failed %d times: %s\n", count, reason.c_str());
  std::printf(
      "transfers that did not deliver everything (or had an inconsistent snapshot): %d of %d\n",
      failed, options.transfers);
  return failed;
}

}  // namespace ferry::bench
