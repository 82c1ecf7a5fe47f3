// Faults under every strategy: before Commit the task resumes at the source, always; after
// Commit, a copy-on-reference task whose source dies is killed with a reason (never left with
// holes in its memory), while a flushed task has no dependency on its source at all; pre-copy
// takes its write-protection off the task when it gives up.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"
#include "transfer/strategy.h"
#include "util/proc.h"

namespace ferry::test {
namespace {

// The task runs on `node`, still prints, and its memory checks out.
void runs_on_and_intact(TestCluster& c, const std::string& id, const std::string& node,
                        const std::string& via = "") {
  nlohmann::json t = c.task(id, via);
  EXPECT_EQ(t["node"], node) << t.dump();
  EXPECT_EQ(t["state"], "running") << t.dump();
  int lines = sequential_lines(c.logs(id, via));
  EXPECT_TRUE(wait_until(
      [&] {
        return c.logs(id, via).find("line " + std::to_string(lines + 2) + "\n") !=
               std::string::npos;
      },
      15000))
      << "the task stopped";
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}, via).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "60"}, via);
  EXPECT_EQ(w.status, 0) << c.logs(id, via) << w.err;
}

// The host's pid of a task that has `ns_pid` in the PID namespace of the node.
pid_t host_pid(TestCluster& c, const std::string& node, int ns_pid) {
  return proc::pid_in_namespace_of(c.init_pid(node), ns_pid);
}

class StrategyFaultTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(StrategyFaultTest, RestoreFailsAtTheDestination) {
  TestCluster c(2, {"--test-fault", "node2=fail-restore"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "32", "10"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  nlohmann::json r = c.migrate(id, "node2", "", {"--strategy", GetParam()});
  EXPECT_EQ(r["outcome"], "aborted") << r.dump();
  EXPECT_NE(r.value("reason", "").find("restore failed"), std::string::npos) << r.dump();
  runs_on_and_intact(c, id, "node1");
}

TEST_P(StrategyFaultTest, DestinationDiesMidTransfer) {
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  // Pages pass slowly (one 256 KiB frame per 25 ms): the destination dies while they do. For the
  // lazy strategies that is while the task is frozen with nearly nothing sent, or in the push.
  std::string id = c.run({target_path("t_writer"), "64", "10"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2", "m", {"--strategy", GetParam()});
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  c.kill_node("node2");
  int status = wait_exit(m, 60000);
  std::string out = read_file(io / "m.out");
  ASSERT_FALSE(out.empty()) << "no report: " << read_file(io / "m.err");
  nlohmann::json r = nlohmann::json::parse(out);
  if (r["outcome"] != "aborted") {
    // Lazy strategies may have committed before node2 died: the task died with it. Flushing
    // needed nothing more from the source (migrated, then lost with its node); the others
    // could not give it all its pages: reported lost, never migrated.
    const transfer::Strategy& strategy = *transfer::find_strategy(GetParam());
    ASSERT_TRUE(strategy.has_lazy_phase()) << out;
    if (strategy.lazy_from_source()) {
      EXPECT_EQ(r["outcome"], "lost") << out;
      EXPECT_EQ(status, 1);
      EXPECT_TRUE(wait_until([&] { return c.task(id).value("state", "") == "lost"; }, 10000))
          << c.task(id).dump();
    }
    return;
  }
  EXPECT_NE(out.find("aborted"), std::string::npos) << out << read_file(io / "m.err");
  runs_on_and_intact(c, id, "node1");
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, StrategyFaultTest, ::testing::ValuesIn(all_strategies()),
                         [](const auto& info) { return strategy_test_name(info.param); });

// The source dies right after Commit while pages are still there: the task at the destination
// must not run on with holes in its memory. It is killed, and ps and wait say why.
TEST(LazyFaultTest, CopyOnReferenceTaskDiesWithItsSource) {
  TestCluster c(3, {"--test-fault", "node1=die-after-commit"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "64", "10"}, "node2");  // home: node2
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  ASSERT_TRUE(c.migrate(id, "node1", "node2").value("ok", false));
  nlohmann::json r = c.migrate(id, "node3", "node2", {"--strategy", "copy-on-reference"});
  EXPECT_FALSE(r.value("ok", false));
  CmdResult w = c.ferry({"wait", id, "--timeout", "60"}, "node2");
  EXPECT_EQ(w.status, 128 + SIGKILL) << w.out << w.err;
  nlohmann::json t = c.task(id, "node2");
  EXPECT_EQ(t["state"], "exited") << t.dump();
  EXPECT_EQ(t["node"], "node3") << t.dump();
  EXPECT_NE(t.value("exit_reason", "").find("pages could not come"), std::string::npos) << t.dump();
}

// Flushing leaves nothing at the source: its node dies right after Commit, the task runs on.
TEST(LazyFaultTest, FlushedTaskOutlivesItsSource) {
  TestCluster c(3, {"--test-fault", "node1=die-after-commit"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "64", "10", "dontneed"}, "node2");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  ASSERT_TRUE(c.migrate(id, "node1", "node2").value("ok", false));
  pid_t source = c.ferryd_pid("node1");
  ASSERT_GT(source, 0);
  c.migrate(id, "node3", "node2", {"--strategy", "flushing"});
  ASSERT_TRUE(wait_until([&] { return c.task(id, "node2").value("node", "") == "node3"; }, 15000));
  EXPECT_TRUE(wait_until([&] { return ::kill(source, 0) != 0; }, 10000)) << "node1's ferryd lives";
  runs_on_and_intact(c, id, "node3", "node2");
}

// Pre-copy gives up (the destination cannot build the task): the write-protection that tracked
// the task's writes is gone, and the task runs on.
TEST(PrecopyTest, GivingUpTakesTheWriteProtectionOff) {
  TestCluster c(2, {"--test-fault", "node2=fail-restore"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "32", "10"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  nlohmann::json r = c.migrate(id, "node2", "", {"--strategy", "pre-copy"});
  EXPECT_EQ(r["outcome"], "aborted") << r.dump();
  EXPECT_EQ(r.value("dirty_tracking", ""), "uffd") << r.dump();
  EXPECT_GE(r.value("rounds", 0), 1) << r.dump();
  pid_t pid = host_pid(c, "node1", c.task(id)["pid"].get<int>());
  ASSERT_GT(pid, 0);
  std::string smaps = read_file("/proc/" + std::to_string(pid) + "/smaps");
  ASSERT_FALSE(smaps.empty());
  EXPECT_EQ(smaps.find(" uw"), std::string::npos) << "memory still registered for write tracking";
  runs_on_and_intact(c, id, "node1");
}

// The fallback tracker: page hashes instead of write-protection.
TEST(PrecopyTest, HashTrackingMovesAFastWriter) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "64", "50", "dontneed"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  nlohmann::json r =
      c.migrate(id, "node2", "", {"--strategy", "pre-copy", "--dirty-tracking", "hash"});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r["dirty_tracking"], "hash");
  EXPECT_EQ(r["round_list"].size(), r["rounds"].get<size_t>());
  EXPECT_GE(r["bytes_upfront"].get<uint64_t>(), 60u << 20) << r.dump();
  runs_on_and_intact(c, id, "node2");
}

// The report lists every round; a fast writer needs more than one.
TEST(PrecopyTest, TheReportListsEachRound) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_writer"), "128", "200"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 15000));
  nlohmann::json r = c.migrate(id, "node2", "", {"--strategy", "pre-copy", "--max-freeze-ms", "5"});
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  ASSERT_GE(r["rounds"].get<int>(), 2) << r.dump();
  ASSERT_EQ(r["round_list"].size(), r["rounds"].get<size_t>());
  uint64_t sum = 0;
  for (auto& round : r["round_list"]) {
    EXPECT_GT(round["pages"].get<uint64_t>(), 0u);
    EXPECT_EQ(round["bytes"].get<uint64_t>(), round["pages"].get<uint64_t>() * 4096);
    sum += round["bytes"].get<uint64_t>();
  }
  EXPECT_EQ(sum, r["bytes_upfront"].get<uint64_t>());
  EXPECT_LT(r["bytes_frozen"].get<uint64_t>(), 64u << 20) << "the rounds should have sent most";
  runs_on_and_intact(c, id, "node2");
}

}  // namespace ferry::test
