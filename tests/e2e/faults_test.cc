// Faults during a migration: in every case the task runs in exactly one place afterwards (or has
// ended, its status kept), its output is neither lost nor doubled, and the command line says
// what happened.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

bool has_lines(TestCluster& c, const std::string& id, int n) {
  return c.logs(id).find("line " + std::to_string(n) + "\n") != std::string::npos;
}

// The task is alive on `node`, in no other place, still printing, and its memory is intact.
void runs_once_and_intact(TestCluster& c, const std::string& id, const std::string& node) {
  nlohmann::json t = c.task(id);
  EXPECT_EQ(t["node"], node) << t.dump();
  EXPECT_EQ(t["state"], "running") << t.dump();
  int copies = 0;
  for (auto& n : c.nodes())
    if (n["state"] == "up")
      for (auto& tid : n["load"]["tasks"]) copies += tid == id;
  EXPECT_LE(copies, 1) << "the task runs in more than one place";
  int lines = sequential_lines(c.logs(id));
  EXPECT_TRUE(wait_until([&] { return has_lines(c, id, lines + 2); }, 10000))
      << "the task stopped printing";
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "30"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  EXPECT_GT(sequential_lines(c.logs(id)), lines);
}

// Runs `ferry migrate` in the background; returns its pid and where its output goes.
pid_t migrate_in_background(TestCluster& c, const TempDir& io, const std::string& id,
                            const std::string& to, const std::string& name = "m") {
  SpawnOptions o;
  o.stdout_path = io / (name + ".out");
  o.stderr_path = io / (name + ".err");
  return spawn({ferry_bin(), "--cluster", c.dir(), "migrate", id, "--to", to, "--json"}, o);
}

}  // namespace

TEST(FaultsTest, DestinationDiesMidTransfer) {
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "256", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the stream takes ~1.6 s
  c.kill_node("node2");
  EXPECT_EQ(wait_exit(m, 60000), 1);
  EXPECT_NE(read_file(io / "m.out").find("\"outcome\":\"aborted\""), std::string::npos)
      << read_file(io / "m.out");
  runs_once_and_intact(c, id, "node1");
}

TEST(FaultsTest, TheLinkIsCutMidTransfer) {
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "256", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  // node2's cable out of the bridge, then back once the source gave up.
  SpawnOptions o;
  ASSERT_EQ(
      wait_exit(
          spawn({"/usr/bin/env", "ip", "-n", c.bridge_netns(), "link", "set", "v2", "down"}, o),
          10000),
      0);
  EXPECT_EQ(wait_exit(m, 60000), 1);
  EXPECT_NE(read_file(io / "m.out").find("\"outcome\":\"aborted\""), std::string::npos)
      << read_file(io / "m.out");
  ASSERT_EQ(
      wait_exit(spawn({"/usr/bin/env", "ip", "-n", c.bridge_netns(), "link", "set", "v2", "up"}, o),
                10000),
      0);
  runs_once_and_intact(c, id, "node1");
}

TEST(FaultsTest, RestoreFailsAtTheDestination) {
  TestCluster c(2, {"--test-fault", "node2=fail-restore"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_EQ(r["outcome"], "aborted") << r.dump();
  EXPECT_NE(r["reason"].get<std::string>().find("restore failed"), std::string::npos) << r.dump();
  runs_once_and_intact(c, id, "node1");
}

TEST(FaultsTest, TheSourceDiesRightAfterCommit) {
  TestCluster c(3, {"--test-fault", "node2=die-after-commit"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "20"});  // home: node1
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  ASSERT_TRUE(c.migrate(id, "node2").value("ok", false));
  // node2 is the source now, and dies as soon as node3 has the task.
  CmdResult r = c.ferry({"migrate", id, "--to", "node3", "--json"});
  EXPECT_NE(r.status, 0);
  EXPECT_FALSE(r.err.empty()) << "the command line should say what happened";
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("node", "") == "node3"; }, 10000))
      << c.task(id).dump();
  runs_once_and_intact(c, id, "node3");
}

// The destination commits but its answer is lost and it stays unreachable for 3 s: the source
// must keep the original frozen until it learns the copy runs, then destroy it.
TEST(FaultsTest, TheReplyToCommitIsLost) {
  TestCluster c(2, {"--test-fault", "node2=lose-commit-reply"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_EQ(r["outcome"], "migrated") << r.dump();
  EXPECT_GE(r["freeze_ms"].get<double>(), 3000)
      << "the original ran again before the copy was known to run";
  runs_once_and_intact(c, id, "node2");
}

TEST(FaultsTest, TheTaskEndsDuringItsMigration) {
  TestCluster c(2, {"--test-fault", "node1=kill-task-before-freeze"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "4", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_EQ(r["outcome"], "task-exited") << r.dump();
  CmdResult w = c.ferry({"wait", id, "--timeout", "20"});
  EXPECT_EQ(w.status, 128 + SIGTERM) << w.err;
  EXPECT_GT(sequential_lines(c.logs(id)), 2);
  EXPECT_EQ(c.task(id)["state"], "exited");
}

TEST(FaultsTest, TwoMigrationsOfOneTaskAtOnce) {
  TestCluster c(3, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "64", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t a = migrate_in_background(c, io, id, "node2", "a");
  pid_t b = migrate_in_background(c, io, id, "node3", "b");
  int sa = wait_exit(a, 60000), sb = wait_exit(b, 60000);
  std::string ra = read_file(io / "a.out"), rb = read_file(io / "b.out");
  EXPECT_EQ((sa == 0) + (sb == 0), 1) << ra << rb;
  std::string loser = sa == 0 ? rb : ra;
  EXPECT_NE(loser.find("already migrating"), std::string::npos) << loser;
  runs_once_and_intact(c, id, sa == 0 ? "node2" : "node3");
}

}  // namespace ferry::test
