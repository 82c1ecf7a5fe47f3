// Migration between nodes (eager-all): the task keeps running, keeps its memory, its output is
// logged exactly once across any number of moves, and the destination may refuse.
#include <signal.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

}  // namespace

TEST(MigrationTest, ATaskMovedAroundKeepsRunningAndItsOutputIsLoggedOnce) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "64", "20"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 5); }, 10000));
  int moves = 0;
  for (std::string to : {"node2", "node3", "node1", "node3"}) {
    nlohmann::json r = c.migrate(id, to);
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    moves++;
    EXPECT_EQ(r["to"], to);
    EXPECT_GT(r["bytes_sent"].get<uint64_t>(), 64u << 20);
    nlohmann::json t = c.task(id, "node2");
    EXPECT_EQ(t["node"], to) << t.dump();
    EXPECT_EQ(t["epoch"], moves);
    EXPECT_EQ(t["state"], "running");
    int lines = sequential_lines(c.logs(id));
    ASSERT_TRUE(wait_until([&] { return has_lines(c, id, lines + 3); }, 10000))
        << "no output after moving to " << to;
  }
  // Its memory came along intact every time.
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "30"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  std::string log = c.logs(id);
  EXPECT_GT(sequential_lines(log), 10);
  EXPECT_NE(log.find("OK\n"), std::string::npos);
}

TEST(MigrationTest, TheReportHasTheFigures) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "16", "50"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  nlohmann::json r = c.migrate(id, "node2");
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  for (const char* k :
       {"task", "from", "to", "strategy", "freeze_ms", "total_ms", "bytes_sent", "pages_sent"})
    EXPECT_TRUE(r.contains(k)) << k << " missing: " << r.dump();
  EXPECT_EQ(r["task"], id);
  EXPECT_EQ(r["from"], "node1");
  EXPECT_EQ(r["strategy"], "eager-all");
  EXPECT_GT(r["freeze_ms"].get<double>(), 0);
  EXPECT_GE(r["total_ms"].get<double>(), r["freeze_ms"].get<double>());
  EXPECT_GE(r["pages_sent"].get<uint64_t>(), (16u << 20) / 4096);
  c.ferry({"kill", id, "KILL"});
}

TEST(MigrationTest, TheDestinationRefusesAndSaysWhy) {
  TestCluster c(4, {"--label", "node1:gpu=1", "--node-config", "node2:max_tasks=0", "--node-config",
                    "node3:reserve_memory_mb=100000000"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "8", "50"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  nlohmann::json busy = c.migrate(id, "node2");
  EXPECT_FALSE(busy["ok"].get<bool>());
  EXPECT_EQ(busy["outcome"], "refused");
  EXPECT_NE(busy["reason"].get<std::string>().find("overloaded"), std::string::npos) << busy.dump();
  nlohmann::json memory = c.migrate(id, "node3");
  EXPECT_NE(memory["reason"].get<std::string>().find("not enough memory"), std::string::npos)
      << memory.dump();
  // A task that requires a label cannot go where it is missing.
  std::string gpu_task = c.run({"/bin/sleep", "30"}, "node1");
  CmdResult labelled =
      c.ferry({"run", "--on", "node1", "--label", "gpu=1", "--", "/bin/sleep", "30"});
  ASSERT_EQ(labelled.status, 0) << labelled.err;
  std::string gid = labelled.out.substr(0, labelled.out.find('\n'));
  nlohmann::json label = c.migrate(gid, "node4");
  EXPECT_NE(label["reason"].get<std::string>().find("lacks the label gpu=1"), std::string::npos)
      << label.dump();
  EXPECT_NE(label["exit_status"], 0);
  // Each time the task stayed where it was and kept running.
  EXPECT_EQ(c.task(id)["node"], "node1");
  int before = sequential_lines(c.logs(id));
  EXPECT_TRUE(wait_until([&] { return has_lines(c, id, before + 2); }, 10000));
  c.ferry({"kill", id, "KILL"});
  c.ferry({"kill", gid, "KILL"});
  c.ferry({"kill", gpu_task, "KILL"});
}

// A socket bound to the node's own address cannot move (the destination has another one): the
// destination says so up front and the task runs on. One bound to loopback moves (t_sockets udp
// in the strategies' targets).
TEST(MigrationTest, ASocketBoundToTheSourcesAddressIsRefusedUpFront) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_sockets"), "udp-node"}, "node1");
  ASSERT_TRUE(wait_until([&] { return c.logs(id).find("ready\n") != std::string::npos; }, 15000))
      << c.logs(id);
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_FALSE(r.value("ok", true)) << r.dump();
  EXPECT_EQ(r["outcome"], "refused") << r.dump();
  EXPECT_NE(r["reason"].get<std::string>().find("an address this node does not have"),
            std::string::npos)
      << r.dump();
  EXPECT_EQ(c.task(id)["node"], "node1");
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "30"});
  EXPECT_EQ(w.status, 0) << w.out << w.err << c.logs(id);
  EXPECT_NE(c.logs(id).find("OK\n"), std::string::npos) << c.logs(id);
}

TEST(MigrationTest, ToANodeThatIsDownIsRefused) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "4", "50"});
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  c.kill_node("node3");
  ASSERT_TRUE(wait_until(
      [&] {
        for (auto& n : c.nodes())
          if (n["name"] == "node3") return n["state"] == "down";
        return false;
      },
      8000));
  nlohmann::json r = c.migrate(id, "node3");
  EXPECT_EQ(r["outcome"], "refused") << r.dump();
  EXPECT_NE(r["reason"].get<std::string>().find("down"), std::string::npos) << r.dump();
  EXPECT_EQ(c.task(id)["node"], "node1");
  c.ferry({"kill", id, "KILL"});
}

// The nodes share the host's file system; a bind mount inside node2's own mount namespace makes
// the task's executable a different file there, which the destination must notice up front.
TEST(MigrationTest, AFileThatDiffersAtTheDestinationIsRefusedUpFront) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir tmp;
  std::string prog = tmp / "worker";
  ASSERT_TRUE(std::filesystem::copy_file(target_path("t_worker"), prog));
  std::string id = c.run({prog, "4", "50"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  pid_t node2 = c.init_pid("node2");
  CmdResult bind = run_command({"nsenter", "-t", std::to_string(node2), "-m", "mount", "--bind",
                                target_path("t_memory"), prog});
  ASSERT_EQ(bind.status, 0) << bind.err;
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_EQ(r["outcome"], "refused") << r.dump();
  EXPECT_EQ(r["reason"], "file " + prog + " differs here (size or modification time)") << r.dump();
  EXPECT_EQ(c.task(id)["node"], "node1");
  int lines = sequential_lines(c.logs(id));
  EXPECT_TRUE(wait_until([&] { return has_lines(c, id, lines + 2); }, 10000))
      << "the task stopped at the source";
  c.ferry({"kill", id, "KILL"});
}

// A lock on a shared file belongs to the whole cluster; ferry does not hand it over and says so.
TEST(MigrationTest, ATaskHoldingFileLocksIsRefused) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  std::string id = c.run({target_path("t_files"), dir.path()}, "node1");
  ASSERT_TRUE(wait_until([&] { return c.logs(id).find("ready\n") != std::string::npos; }, 15000));
  nlohmann::json r = c.migrate(id, "node2");
  EXPECT_EQ(r["outcome"], "refused") << r.dump();
  EXPECT_NE(r.value("reason", "").find("holds a file lock"), std::string::npos) << r.dump();
  EXPECT_EQ(c.task(id)["node"], "node1");
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  EXPECT_EQ(c.ferry({"wait", id, "--timeout", "30"}).status, 0) << c.logs(id);
}

// `--node` after the subcommand picks the node to ask, and a task starts on the node asked.
TEST(MigrationTest, RunWithNodeStartsTheTaskThere) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  CmdResult r = c.ferry({"run", "--node", "node2", "--", target_path("t_worker"), "1", "50"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  EXPECT_EQ(c.task(id)["node"], "node2");
  c.ferry({"kill", id, "KILL"});
}

TEST(MigrationTest, SignalsReachTheTaskWhereverItIs) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "1", "50"}, "node2");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  ASSERT_TRUE(c.migrate(id, "node1").value("ok", false));
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}, "node2").status, 0);
  EXPECT_EQ(c.ferry({"wait", id, "--timeout", "20"}, "node2").status, 0);
}

}  // namespace ferry::test
