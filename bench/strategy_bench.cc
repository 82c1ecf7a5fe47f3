// The five address-space strategies side by side: a task of 64 MiB .. 1 GiB, idle or writing
// 10 MB/s or 100 MB/s, migrated between the two nodes of a local cluster with each strategy.
// Medians of several runs of: freeze time, total time, bytes sent, remote faults, rounds, and
// when the last page arrived. Bytes are compared with the task's resident private memory,
// measured right before the migration. Prints a markdown table, and with gnuplot writes a PNG
// plot (freeze and total time against size, a line per strategy, writing 10 MB/s). One untimed
// migration per strategy warms the cluster up first.
//
// usage: strategy_bench [--sizes 64,256,1024] [--rates 0,10,100] [--reps 3] [--plot FILE.png]
//                       [--strategies eager-all,pre-copy,...]
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench_cluster.h"
#include "util/proc.h"
#include "transfer/strategy.h"

namespace {

using ferry::bench::median;

struct Sample {
  std::vector<double> freeze, total, mib_sent, sent_ratio, faults, rounds, last_page;
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<double> sizes{64, 256, 1024}, rates{0, 10, 100};
  int reps = 3;
  std::string plot = "bench/strategies.png";
  std::vector<std::string> strategies = ferry::transfer::strategy_name_list();
  CLI::App app{"The five strategies: freeze, total time and bytes by memory and write rate"};
  app.add_option("--sizes", sizes, "MiB of memory, comma separated")->delimiter(',');
  app.add_option("--rates", rates, "MB/s the task writes, comma separated")->delimiter(',');
  app.add_option("--reps", reps, "runs of each measurement")->capture_default_str();
  app.add_option("--plot", plot, "the plot to write")->capture_default_str();
  app.add_option("--strategies", strategies, "comma separated")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  ferry::bench::BenchCluster cluster("/var/tmp/ferry-strategy-bench");
  if (!cluster.up()) {
    std::fprintf(stderr, "cluster up failed\n");
    return 1;
  }
  // One untimed migration with each strategy first: the first migration after the nodes came up
  // meets cold caches (ferryd's and ferry-helper's code, the peers' connections) and costs a few
  // ms more than any later one.
  for (const std::string& strategy : strategies) {
    std::string task = cluster.start_task(16, 0);
    cluster.ferry({"migrate", task, "--to", "node2", "--strategy", strategy});
    cluster.ferry({"kill", task, "KILL"});
    cluster.ferry({"wait", task, "--timeout", "30"});
  }
  std::map<std::tuple<double, double, std::string>, Sample> results;
  std::printf(
      "| memory | writes | strategy | freeze ms | total ms | MiB sent | sent / resident | remote "
      "faults | rounds | last page ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (double mib : sizes)
    for (double rate : rates)
      for (const std::string& strategy : strategies) {
        Sample& s = results[{mib, rate, strategy}];
        for (int r = 0; r < reps; r++) {
          std::string task = cluster.start_task(static_cast<int>(mib), rate);
          double resident = 0;
          auto ps = nlohmann::json::parse(cluster.ferry({"ps", "--json"}).out);
          for (auto& t : ps["tasks"])
            if (t["id"] == task)
              resident = static_cast<double>(ferry::bench::resident_private_bytes(
                  cluster.host_pid("node1", t["pid"].get<int>())));
          auto m =
              cluster.ferry({"migrate", task, "--to", "node2", "--json", "--strategy", strategy});
          cluster.ferry({"kill", task, "KILL"});
          cluster.ferry({"wait", task, "--timeout", "30"});
          nlohmann::json j;
          try {
            j = nlohmann::json::parse(m.out);
          } catch (...) {
          }
          if (m.status != 0 || !j.value("ok", false)) {
            std::fprintf(stderr, "%s %g MiB %g MB/s: migration failed: %s\n", strategy.c_str(), mib,
                         rate, m.out.c_str());
            continue;
          }
          double sent = j["bytes_sent"].get<double>();
          s.freeze.push_back(j["freeze_ms"].get<double>());
          s.total.push_back(j["total_ms"].get<double>());
          s.mib_sent.push_back(sent / (1 << 20));
          s.sent_ratio.push_back(resident > 0 ? sent / resident : 0);
          s.faults.push_back(j["remote_faults"].get<double>());
          s.rounds.push_back(j["rounds"].get<double>());
          s.last_page.push_back(j["last_page_ms"].get<double>());
        }
        std::printf("| %g MiB | %s | %s | %.1f | %.1f | %.1f | %.3f | %.0f | %.0f | %.1f |\n", mib,
                    rate > 0 ? (std::to_string(static_cast<int>(rate)) + " MB/s").c_str() : "idle",
                    strategy.c_str(), median(s.freeze), median(s.total), median(s.mib_sent),
                    median(s.sent_ratio), median(s.faults), median(s.rounds), median(s.last_page));
        std::fflush(stdout);
      }

  // The plot: writing 10 MB/s (or the first rate given), freeze and total against size.
  double plot_rate = rates.size() > 1 ? rates[1] : rates[0];
  std::string data = "/var/tmp/ferry-strategy-bench.dat";
  FILE* f = std::fopen(data.c_str(), "w");
  if (!f) return 0;
  for (const std::string& strategy : strategies) {
    std::fprintf(f, "\"%s\"\n", strategy.c_str());
    for (double mib : sizes) {
      Sample& s = results[{mib, plot_rate, strategy}];
      std::fprintf(f, "%g %.3f %.3f\n", mib, median(s.freeze), median(s.total));
    }
    std::fprintf(f, "\n\n");
  }
  std::fclose(f);
  std::string script = "/var/tmp/ferry-strategy-bench.gp";
  f = std::fopen(script.c_str(), "w");
  if (!f) return 0;
  std::fprintf(f,
               "set terminal pngcairo size 1200,500 noenhanced\n"
               "set output '%s'\n"
               "set multiplot layout 1,2 title 'ferry: migration of a task writing %g MB/s, "
               "node to node (median of %d)'\n"
               "set logscale xy\nset grid\nset key top left\nset xlabel 'task memory (MiB)'\n"
               "set xtics (64, 256, 1024)\nset xrange [48:1400]\n"
               "set ylabel 'freeze time (ms)'\nset title 'time the task is stopped'\n"
               "plot for [i=0:%d] '%s' index i using 1:2 with linespoints title columnheader(1)\n"
               "set ylabel 'total time (ms)'\nset title 'until the source is no longer needed'\n"
               "plot for [i=0:%d] '%s' index i using 1:3 with linespoints title columnheader(1)\n"
               "unset multiplot\n",
               plot.c_str(), plot_rate, reps, static_cast<int>(strategies.size()) - 1, data.c_str(),
               static_cast<int>(strategies.size()) - 1, data.c_str());
  std::fclose(f);
  if (ferry::bench::run({"gnuplot", script}).status != 0)
    std::fprintf(stderr, "gnuplot failed: no plot\n");
  else
    std::printf("\nplot: %s\n", plot.c_str());
  unlink(data.c_str());
  unlink(script.c_str());
  return 0;
}
