// Does ferryd hold on to anything per migration? A 2-node local cluster migrates one small task
// back and forth N times (all five strategies in turn) and records, every M migrations, what each
// node's ferryd holds: threads, open descriptors, descriptors of deleted files (a page store
// kept open), resident memory. Prints a markdown table and the growth per 100 migrations over
// the second half of the run (after the warm-up of allocators and caches), which must be ~0.
//
//
// With --transfers N it soaks channels instead (channel_soak.h): N transfers of --gib G (default
// 2) each across the two nodes, both ends moved in turn every --every-ms (default 300) while the
// data flows, every byte checked at the reader; with --snapshots yes, snapshots of the job are
// taken one after the other meanwhile, each checked (consistent, or failed with its reason).
//
// usage: soak_bench [--migrations 1000] [--every 100] [--mib 4]
//        soak_bench --transfers 10 [--gib 2] [--every-ms 300] [--snapshots yes|no]
//        soak_bench --pattern-source BYTES SEED | --pattern-sink BYTES SEED   (the tasks it runs)
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench_cluster.h"
#include "channel_soak.h"
#include "transfer/strategy.h"

namespace {

struct Row {
  int migrations;
  double seconds;
  ferry::bench::Resources node[2];
};

int migration_soak(ferry::bench::BenchCluster& cluster, int total, int every, int mib) {
  const std::vector<std::string> strategies = ferry::transfer::strategy_name_list();
  const char* nodes[] = {"node1", "node2"};
  std::string task = cluster.start_task(mib, 0);
  pid_t ferryd[2] = {cluster.ferryd_pid("node1"), cluster.ferryd_pid("node2")};
  std::vector<Row> rows;
  auto sample = [&](int done, double seconds) {
    Row r{done, seconds, {}};
    for (int n = 0; n < 2; n++) r.node[n] = ferry::bench::resources_of(ferryd[n]);
    rows.push_back(r);
  };
  auto start = std::chrono::steady_clock::now();
  sample(0, 0);
  int failures = 0;
  for (int i = 1; i <= total; i++) {
    std::string to = nodes[i % 2];
    auto r = cluster.ferry(
        {"migrate", task, "--to", to, "--strategy", strategies[i % strategies.size()]});
    if (r.status != 0) failures++;
    if (i % every == 0)
      sample(i, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::printf("| migrations | s | threads (node1/node2) | fds | deleted files held | RSS MiB |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (auto& r : rows)
    std::printf("| %d | %.0f | %llu / %llu | %llu / %llu | %llu / %llu | %.1f / %.1f |\n",
                r.migrations, r.seconds, (unsigned long long)r.node[0].threads,
                (unsigned long long)r.node[1].threads, (unsigned long long)r.node[0].fds,
                (unsigned long long)r.node[1].fds, (unsigned long long)r.node[0].deleted_files,
                (unsigned long long)r.node[1].deleted_files, r.node[0].rss_kib / 1024.0,
                r.node[1].rss_kib / 1024.0);
  // Growth per 100 migrations over the second half.
  const Row& mid = rows[rows.size() / 2];
  const Row& last = rows.back();
  double span = (last.migrations - mid.migrations) / 100.0;
  if (span > 0)
    for (int n = 0; n < 2; n++)
      std::printf("%s, migrations %d..%d, per 100: threads %+.1f, fds %+.1f, RSS %+.2f MiB\n",
                  nodes[n], mid.migrations, last.migrations,
                  (double(last.node[n].threads) - double(mid.node[n].threads)) / span,
                  (double(last.node[n].fds) - double(mid.node[n].fds)) / span,
                  (double(last.node[n].rss_kib) - double(mid.node[n].rss_kib)) / 1024.0 / span);
  std::printf("failed migrations: %d of %d\n", failures, total);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--pattern-source" && argc == 4)
    return ferry::bench::pattern_source(std::stoull(argv[2]), std::stoull(argv[3]));
  if (mode == "--pattern-sink" && argc == 4)
    return ferry::bench::pattern_sink(std::stoull(argv[2]), std::stoull(argv[3]));
  int total = 1000, every = 100, mib = 4;
  double gib = 2;
  ferry::bench::ChannelSoakOptions soak;
  soak.transfers = 0;
  std::string snapshots = "no";
  CLI::App app{"What ferryd holds on to over many migrations, or over long channel transfers"};
  app.add_option("--migrations", total, "migrations of one task")->capture_default_str();
  app.add_option("--every", every, "sample every N migrations")->capture_default_str();
  app.add_option("--mib", mib, "the task's memory")->capture_default_str();
  app.add_option("--transfers", soak.transfers, "soak channels instead: transfers");
  app.add_option("--gib", gib, "GiB per transfer")->capture_default_str();
  app.add_option("--every-ms", soak.every_ms, "move an end every M ms")->capture_default_str();
  app.add_option("--snapshots", snapshots, "take snapshots meanwhile")
      ->check(CLI::IsMember({"yes", "no"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  soak.snapshots = snapshots == "yes";
  const std::string dir = "/var/tmp/ferry-soak-bench";
  ferry::bench::BenchCluster cluster(dir);
  if (!cluster.up()) {
    std::fprintf(stderr, "cluster up failed\n");
    return 1;
  }
  if (soak.transfers <= 0) return migration_soak(cluster, total, every, mib);
  ferry::bench::JobFilesDir job_files(dir + "-jobs");
  soak.job_dir = job_files.path();
  soak.self = cluster.bin() + "/soak_bench";
  soak.bytes = static_cast<uint64_t>(gib * (1ull << 30));
  return ferry::bench::channel_soak(cluster, soak) ? 1 : 0;
}
