// The Starter's load sharing (issue 13): an imbalanced load -- 2N CPU-bound tasks (four times
// the cluster's capacity at half a CPU a node) all started on node1 of N nodes of --cpus each
// (half a CPU by default), N = 2, 3, 4 -- with load sharing on, against limits measured in the
// same run:
//   - the makespan against the ideal (all the work over all the capacity, derived from the
//     makespan without the policy: one node doing all the work takes N times the ideal) and
//     against no policy; target: <= 1.25x ideal at every size;
//   - the number of migrations, the time from the imbalance to the first move;
//   - the mean slowdown (a task's time over the time it takes alone on a node), with and
//     without the policy.
// usage: policy_bench [--reps 3] [--units 400] [--cpus 0.5] [--nodes N] [--keep-events PREFIX]
// (as root; medians of REPS runs with the policy, one run without: its makespan is the work over
// one node's capacity, which does not vary; --nodes: that size only; --keep-events: each run's
// `ferry events --json` goes to PREFIX-<N>n-<run>.jsonl)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_cluster.h"

namespace {

using ferry::bench::BenchCluster;
using ferry::bench::median;

uint64_t now_unix_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

struct Run {
  double makespan_s = 0;
  double mean_slowdown = 0;  // filled by the caller (needs the time alone)
  std::vector<double> task_s;
  int moves = 0;
  double first_move_s = -1;
};

uint64_t iters_per_unit(const BenchCluster& c) {
  auto out = ferry::bench::run({c.targets() + "/t_cpu", "calibrate"});
  return std::max<uint64_t>(1000, std::strtoull(out.out.c_str(), nullptr, 10) * 10);
}

Run one_run(BenchCluster& c, int tasks, int units, uint64_t iters, const std::string& keep) {
  Run r;
  const uint64_t start = now_unix_ms();
  std::vector<std::string> ids;
  for (int i = 0; i < tasks; i++) {
    auto out = c.ferry({"run", "--node", "node1", "--", c.targets() + "/t_cpu",
                        std::to_string(units), std::to_string(iters), "4"});
    ids.push_back(out.out.substr(0, out.out.find('\n')));
  }
  for (auto& id : ids) c.ferry({"wait", id});
  auto ps = nlohmann::json::parse(c.ferry({"ps", "--json"}).out, nullptr, false);
  uint64_t last = start;
  for (auto& t : ps["tasks"])
    for (auto& id : ids)
      if (t.value("id", "") == id) {
        uint64_t ended = t.value("ended_unix_ms", start);
        last = std::max(last, ended);
        r.task_s.push_back(static_cast<double>(ended - t.value("started_unix_ms", start)) / 1000);
      }
  r.makespan_s = static_cast<double>(last - start) / 1000;
  std::string events = c.ferry({"events", "--json"}).out;
  if (!keep.empty()) std::ofstream(keep, std::ios::app) << events;
  for (size_t at = 0; at < events.size();) {
    size_t nl = events.find('\n', at);
    if (nl == std::string::npos) nl = events.size();
    auto e = nlohmann::json::parse(events.substr(at, nl - at), nullptr, false);
    at = nl + 1;
    if (e.is_discarded() || e.value("kind", "") != "moved" || e.value("unix_ms", 0ull) < start)
      continue;
    r.moves++;
    double s = static_cast<double>(e.value("unix_ms", 0ull) - start) / 1000;
    if (r.first_move_s < 0 || s < r.first_move_s) r.first_move_s = s;
  }
  return r;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 3, units = 400;
  std::string cpus = "0.5", keep_events;
  std::vector<int> sizes{2, 3, 4};
  int nodes = 0;
  CLI::App app{"The Starter's load sharing: makespan against the ideal and no policy"};
  app.add_option("--reps", reps, "runs with the policy on")->capture_default_str();
  app.add_option("--units", units, "each task's work, in units of 10 ms")->capture_default_str();
  app.add_option("--cpus", cpus, "each node's CPUs")->capture_default_str();
  app.add_option("--nodes", nodes, "one cluster size instead of 2, 3 and 4");
  app.add_option("--keep-events", keep_events, "keep the Starters' events under this prefix");
  CLI11_PARSE(app, argc, argv);
  if (nodes > 0) sizes = {nodes};
  std::printf(
      "| nodes | tasks | no policy (s) | ideal (s) | with (s) | x ideal | x no policy | "
      "moves | first move (s) | mean slowdown without / with |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int nodes : sizes) {
    BenchCluster c("/tmp/ferry-policy-bench", {"--nodes", std::to_string(nodes), "--cpus", cpus});
    if (!c.up()) {
      std::fprintf(stderr, "cluster of %d nodes did not come up\n", nodes);
      return 1;
    }
    const int tasks = 2 * nodes;
    const uint64_t iters = iters_per_unit(c);
    Run without = one_run(c, tasks, units, iters, "");
    // One task alone on a node: its work over the node's capacity, i.e. the shared run over the
    // tasks.
    const double alone_s = without.makespan_s / tasks;  // (2N tasks on one node)
    const double ideal_s = without.makespan_s / nodes;
    c.ferry({"policy", "set", "load-sharing", "on"});
    std::vector<double> makespans, moves, first, slowdowns;
    for (int i = 0; i < reps; i++) {
      Run with =
          one_run(c, tasks, units, iters,
                  keep_events.empty() ? "" : fmt::format("{}-{}n-{}.jsonl", keep_events, nodes, i));
      makespans.push_back(with.makespan_s);
      moves.push_back(with.moves);
      first.push_back(with.first_move_s);
      slowdowns.push_back(mean(with.task_s) / alone_s);
    }
    const double m = median(makespans);
    std::printf("| %d | %d | %.1f | %.1f | %.1f | %.2f | %.2f | %.0f | %.1f | %.2f / %.2f |\n",
                nodes, tasks, without.makespan_s, ideal_s, m, m / ideal_s, m / without.makespan_s,
                median(moves), median(first), mean(without.task_s) / alone_s, median(slowdowns));
    std::fflush(stdout);
  }
  return 0;
}
