// The five address-space strategies, each with: a task that writes its memory fast while it is
// migrated (and checks it itself), the engine's targets (registers, signals, timers, files, task
// attributes, memory of every kind), a task doing file I/O, and gzip in the middle of its
// stream. After every migration the task runs in one place, its output is neither lost nor
// doubled, and its own checks pass.
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"
#include "transfer/strategy.h"

namespace ferry::test {
namespace {

bool has_line(TestCluster& c, const std::string& id, const std::string& line) {
  return c.logs(id).find(line + "\n") != std::string::npos;
}

// Sends SIGUSR2 (the targets' "check yourself now") and expects a clean exit with "OK".
void checks_pass(TestCluster& c, const std::string& id) {
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "60"});
  EXPECT_EQ(w.status, 0) << c.logs(id) << w.err;
  EXPECT_TRUE(has_line(c, id, "OK")) << c.logs(id);
}

nlohmann::json migrate_ok(TestCluster& c, const std::string& id, const std::string& to,
                          const std::string& strategy, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"--strategy", strategy});
  nlohmann::json r = c.migrate(id, to, "", extra);
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r.value("strategy", ""), strategy);
  return r;
}

class StrategyTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

// 64 MiB rewritten at 20 MB/s, some pages dropped (MADV_DONTNEED) as it goes: moved three
// times; every page holds what its step counter says.
TEST_P(StrategyTest, AFastWriterKeepsItsMemory) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "64", "20", "dontneed"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  for (std::string to : {"node2", "node3", "node1"}) {
    nlohmann::json r = migrate_ok(c, id, to, GetParam());
    EXPECT_EQ(c.task(id)["node"], to);
    int lines = sequential_lines(c.logs(id));
    ASSERT_TRUE(wait_until([&] { return has_lines(c, id, lines + 2); }, 15000))
        << "stopped on " << to;
  }
  checks_pass(c, id);
  EXPECT_GT(sequential_lines(c.logs(id)), 5);
}

// A task whose layout changes every millisecond: the layout the destination laid out before the
// freeze is stale by the freeze, and the migration must notice and build from the description
// taken at the freeze (pre-copy: rebuild around the retained memory). Moved three times.
TEST_P(StrategyTest, ATaskThatKeepsRemappingItsMemory) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "16", "10", "remap"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  for (std::string to : {"node2", "node1", "node2"}) {
    migrate_ok(c, id, to, GetParam());
    int lines = sequential_lines(c.logs(id));
    ASSERT_TRUE(wait_until([&] { return has_lines(c, id, lines + 2); }, 15000))
        << "stopped on " << to;
  }
  checks_pass(c, id);
  // Strategies that lay the task out before the freeze from its running layout notice that the
  // layout changed meanwhile.
  const transfer::Strategy& strategy = *transfer::find_strategy(GetParam());
  if (!strategy.sends_rounds() && !strategy.stores_pages()) {
    std::string logs = read_file(c.dir() + "/nodes/node1/ferryd.log") +
                       read_file(c.dir() + "/nodes/node2/ferryd.log");
    EXPECT_NE(logs.find("changed its layout since it was laid out here"), std::string::npos)
        << "the stale layout was never noticed";
  }
}

// The engine's own targets: each sets up one family of process state and checks it on USR2.
TEST_P(StrategyTest, TheEnginesTargetsComeThroughIntact) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::vector<std::vector<std::string>> targets = {
      {target_path("t_regs")},
      {target_path("t_signals")},
      {target_path("t_timers")},
      {target_path("t_memory"), dir.path()},
      {target_path("t_files"), dir / "files", "nolocks"},
      {target_path("t_sockets"), "udp"},
      {target_path("t_sockets"), "tcp-listen"},
      {target_path("t_sockets"), "pair-stream"},
      {target_path("t_sockets"), "pty"}};
  ASSERT_EQ(::mkdir((dir / "files").c_str(), 0700), 0);
  for (auto& argv : targets) {
    SCOPED_TRACE(argv[0]);
    std::string id = c.run(argv, "node1");
    ASSERT_TRUE(wait_until([&] { return has_line(c, id, "ready"); }, 15000)) << c.logs(id);
    migrate_ok(c, id, "node2", GetParam());
    checks_pass(c, id);
  }
}

TEST_P(StrategyTest, ATaskDoingFileIoLosesNoRecord) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string id = c.run({target_path("t_fileio"), dir.path()}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  migrate_ok(c, id, "node2", GetParam());
  int lines = sequential_lines(c.logs(id));
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, lines + 3); }, 15000));
  migrate_ok(c, id, "node1", GetParam());
  checks_pass(c, id);
}

// gzip moved while it compresses: its output is byte for byte what gzip alone makes.
TEST_P(StrategyTest, GzipMidStream) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string input = dir / "input";
  {
    // ~96 MiB of varied, compressible text: gzip takes a few seconds over it.
    std::ofstream out(input);
    uint64_t x = 88172645463325252ull;
    std::string line;
    for (int i = 0; i < 1500000; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      line = "entry " + std::to_string(i) + " value " + std::to_string(x % 100000) +
             " padding padding padding padding\n";
      out << line;
    }
  }
  CmdResult expected = run_command({"gzip", "-n", "-c", input}, 120000);
  ASSERT_EQ(expected.status, 0);
  std::string id = c.run({"/usr/bin/gzip", "-n", "-c", input}, "node1");
  ASSERT_TRUE(wait_until([&] { return c.logs(id).size() > 64 * 1024; }, 20000));
  ASSERT_EQ(c.task(id).value("state", ""), "running") << "gzip ended before it could be moved";
  migrate_ok(c, id, "node2", GetParam());
  CmdResult w = c.ferry({"wait", id, "--timeout", "120"});
  EXPECT_EQ(w.status, 0) << w.err;
  std::string got = c.logs(id);
  EXPECT_EQ(got.size(), expected.out.size());
  EXPECT_TRUE(got == expected.out) << "gzip's output differs after the move";
}

class LazyStrategyTest : public ::testing::TestWithParam<std::string> {};

// Pages placed after the task runs again are refused by the kernel while the task changes its
// memory (here: a MADV_DONTNEED every 16 pages written, at 400 MB/s, so nearly always). Each
// refusal is tried again once the task's event is read: every page arrives, soon, and the task
// lives (it used to be killed for pages that kept missing their place).
TEST_P(LazyStrategyTest, ATaskThatDropsPagesAllTheTimeGetsEveryPage) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "64", "400", "dontneed"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  for (std::string to : {"node2", "node1"}) {
    nlohmann::json r = migrate_ok(c, id, to, GetParam());
    ASSERT_EQ(c.task(id).value("state", ""), "running") << "lost at " << to;
    EXPECT_LT(r.value("last_page_ms", 1e9), 5000.0) << r.dump();
  }
  checks_pass(c, id);
}

std::vector<std::string> lazy_strategies() {
  std::vector<std::string> out;
  for (const std::string& name : all_strategies())
    if (transfer::find_strategy(name)->has_lazy_phase()) out.push_back(name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(LazyStrategies, LazyStrategyTest, ::testing::ValuesIn(lazy_strategies()),
                         [](const auto& info) { return strategy_test_name(info.param); });

INSTANTIATE_TEST_SUITE_P(AllStrategies, StrategyTest, ::testing::ValuesIn(all_strategies()),
                         [](const auto& info) { return strategy_test_name(info.param); });

}  // namespace ferry::test
