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
#include "util/proc.h"

namespace ferry::test {
namespace {

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
  // The report says how long the task was really frozen (the stream stalled for seconds).
  nlohmann::json r = nlohmann::json::parse(read_file(io / "m.out"));
  EXPECT_GE(r["freeze_ms"].get<double>(), 1000) << r.dump();
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

// A node of a build before frames were padded and their format announced (the fault plays one:
// it announces none and checks none) would fail every frame of this build: neither way does a
// migration get as far as a frame. Refused with the reason; the task runs on where it was.
TEST(FaultsTest, NoTaskMovesBetweenNodesOfTwoBuilds) {
  TestCluster c(2, {"--test-fault", "node2=old-frame-format"});
  ASSERT_TRUE(c.up());
  // To the earlier build: it accepts, and the source (this build) sees it says nothing.
  std::string here = c.run({target_path("t_worker"), "16", "20"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, here, 3); }, 10000));
  nlohmann::json r = c.migrate(here, "node2");
  EXPECT_EQ(r.value("outcome", ""), "refused") << r.dump();
  EXPECT_NE(r.value("reason", "").find("node node2 runs another ferry build"), std::string::npos)
      << r.dump();
  runs_once_and_intact(c, here, "node1");
  // From it: this build's destination refuses the offer.
  std::string there = c.run({target_path("t_worker"), "16", "20"}, "node2");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, there, 3); }, 10000));
  r = c.migrate(there, "node1");
  EXPECT_EQ(r.value("outcome", ""), "refused") << r.dump();
  EXPECT_NE(r.value("reason", "").find("node node1 runs another ferry build than the source"),
            std::string::npos)
      << r.dump();
  runs_once_and_intact(c, there, "node2");
}

TEST(FaultsTest, TheSourceDiesRightAfterCommit) {
  TestCluster c(3, {"--test-fault", "node2=die-after-commit"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "20"});  // home: node1
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  ASSERT_TRUE(c.migrate(id, "node2").value("ok", false));
  // node2 is the source now, and its ferryd dies as soon as node3 has the task. The node asked
  // (node1) reports it anyway: migrated, and that the source went away.
  CmdResult r = c.ferry({"migrate", id, "--to", "node3", "--json"});
  ASSERT_FALSE(r.out.empty()) << "no report: " << r.err;
  nlohmann::json rep = nlohmann::json::parse(r.out);
  EXPECT_EQ(rep["outcome"], "migrated") << r.out;
  EXPECT_NE(rep.value("reason", "").find("went away"), std::string::npos) << r.out;
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

// As above, and the destination's ferryd dies while the source is in doubt: the ferryd that
// starts next must still say the copy was released (its commit journal), or the source would
// resume its original and the task would run twice (its copy runs on across the restart).
TEST(FaultsTest, ADestinationThatRestartsWhileTheSourceIsInDoubtIsBelieved) {
  TestCluster c(2, {"--test-fault", "node2=lose-commit-reply"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2");
  // Committed at node2 (its home heard so), and the source now waits for an answer.
  ASSERT_TRUE(wait_until([&] { return c.task(id, "node1").value("node", "") == "node2"; }, 20000));
  pid_t destination = c.ferryd_pid("node2");
  ASSERT_GT(destination, 0);
  ASSERT_EQ(::kill(destination, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(io / "m.out") << read_file(io / "m.err");
  nlohmann::json r = nlohmann::json::parse(read_file(io / "m.out"));
  EXPECT_EQ(r["outcome"], "migrated") << r.dump();
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("state", "") == "running"; }, 15000));
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

// Killed by somebody else while frozen: the report says so, as JSON, with the freeze.
TEST(FaultsTest, ATaskKilledWhileFrozenIsReportedAsEnded) {
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "64", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  pid_t host = proc::pid_in_namespace_of(c.init_pid("node1"), c.task(id)["pid"].get<pid_t>());
  ASSERT_GT(host, 0);
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2");
  // Frozen while its 64 MiB pass one slow frame after the other.
  ASSERT_TRUE(wait_until([&] { return proc::Stat(host).state() == 't'; }, 10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::kill(host, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m, 60000), 1);
  std::string out = read_file(io / "m.out");
  ASSERT_FALSE(out.empty()) << "no report: " << read_file(io / "m.err");
  nlohmann::json r = nlohmann::json::parse(out);
  EXPECT_EQ(r["outcome"], "task-exited") << r.dump();
  EXPECT_GE(r["freeze_ms"].get<double>(), 300) << r.dump();
  CmdResult w = c.ferry({"wait", id, "--timeout", "20"});
  EXPECT_EQ(w.status, 128 + SIGKILL) << w.out << w.err;
}

// The source's ferryd dies in the middle: the command still ends with a complete report (from
// the node asked), and the task runs where it was (adopted by the source's next ferryd).
TEST(FaultsTest, ASourceWhoseFerrydDiesStillGivesAReport) {
  TestCluster c(3, {"--test-fault", "node2=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "64", "20"}, "node2");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node3", "m", {}, "node1");
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  pid_t source = c.ferryd_pid("node2");
  ASSERT_GT(source, 0);
  ASSERT_EQ(::kill(source, SIGKILL), 0);
  EXPECT_EQ(wait_exit(m, 60000), 1);
  std::string out = read_file(io / "m.out");
  ASSERT_FALSE(out.empty()) << "no report: " << read_file(io / "m.err");
  nlohmann::json r = nlohmann::json::parse(out);
  EXPECT_EQ(r["outcome"], "aborted") << r.dump();
  EXPECT_NE(r.value("reason", "").find("went away"), std::string::npos) << r.dump();
  EXPECT_GT(r["freeze_ms"].get<double>(), 0) << r.dump();
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("state", "") == "running"; }, 15000));
  runs_once_and_intact(c, id, "node2");
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
