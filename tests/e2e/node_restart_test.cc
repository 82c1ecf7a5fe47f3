// A node outlives its daemon: kill -9 of a node's ferryd leaves its tasks running, ferry-init
// starts a new ferryd, which adopts them (output unbroken, signals, wait, migrate all work), and
// a task that ended meanwhile is reported with its real status. A task whose node restarted
// (its kernel, here its whole PID namespace, lost it) is reported lost, with the reason, by
// every command.
#include <signal.h>
#include <chrono>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"
#include "util/proc.h"

namespace ferry::test {
namespace {

// The host's pid of a task (ps reports the pid in its node's PID namespace).
pid_t host_pid_of(TestCluster& c, const std::string& id) {
  nlohmann::json t = c.task(id);
  if (!t.contains("pid")) return -1;
  return proc::pid_in_namespace_of(c.init_pid(t["node"]), t["pid"].get<pid_t>());
}

nlohmann::json node_info(TestCluster& c, const std::string& node, const std::string& via) {
  for (auto& n : c.nodes(via))
    if (n["name"] == node) return n;
  return {};
}

}  // namespace

TEST(NodeRestartTest, TasksOutliveTheirFerrydAndAreAdopted) {
  // node2's ferryd is started again 1.5 s after it dies: time for a task to end meanwhile.
  TestCluster c(2, {"--node-config", "node2:restart_delay_ms=1500"});
  ASSERT_TRUE(c.up());
  std::string worker = target_path("t_worker");
  std::string homed_elsewhere = c.run({worker, "4", "20"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, homed_elsewhere, 2); }, 10000));
  ASSERT_TRUE(c.migrate(homed_elsewhere, "node2").value("ok", false));
  std::string homed_here = c.run({worker, "4", "20"}, "node2");
  std::string ends_meanwhile = c.run({worker, "4", "20"}, "node2");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, homed_here, 3); }, 10000));
  pid_t pid_a = host_pid_of(c, homed_elsewhere), pid_b = host_pid_of(c, homed_here);
  pid_t pid_e = host_pid_of(c, ends_meanwhile);
  ASSERT_GT(pid_a, 0);
  ASSERT_GT(pid_b, 0);
  ASSERT_GT(pid_e, 0);
  pid_t old_ferryd = c.ferryd_pid("node2");
  ASSERT_GT(old_ferryd, 0);

  ASSERT_EQ(::kill(old_ferryd, SIGKILL), 0);
  ASSERT_TRUE(wait_until([&] { return ::kill(old_ferryd, 0) != 0; }, 5000));
  ASSERT_EQ(::kill(pid_e, SIGTERM), 0);  // ends while no ferryd watches it

  // A new ferryd, counted, the tasks still the same processes.
  ASSERT_TRUE(wait_until(
      [&] {
        nlohmann::json n = node_info(c, "node2", "node1");
        return n.value("state", "") == "up" && n.value("ferryd_starts", 0) == 2;
      },
      15000))
      << node_info(c, "node2", "node1").dump();
  // Both ways: the other nodes reach the new ferryd within a couple of seconds (no reconnect
  // back-off of tens of seconds).
  auto since = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_until([&] { return c.task(homed_here).value("state", "") == "running"; }, 5000));
  EXPECT_TRUE(
      wait_until([&] { return node_info(c, "node1", "node2").value("state", "") == "up"; }, 5000));
  EXPECT_LT(std::chrono::steady_clock::now() - since, std::chrono::seconds(3));
  pid_t new_ferryd = c.ferryd_pid("node2");
  EXPECT_GT(new_ferryd, 0);
  EXPECT_NE(new_ferryd, old_ferryd);
  EXPECT_EQ(host_pid_of(c, homed_elsewhere), pid_a);
  EXPECT_EQ(host_pid_of(c, homed_here), pid_b);
  for (auto& id : {homed_elsewhere, homed_here}) {
    EXPECT_EQ(c.task(id)["state"], "running") << c.task(id).dump();
    // Output goes on, every line once, across the daemon's death.
    int lines = sequential_lines(c.logs(id));
    EXPECT_TRUE(wait_until([&] { return has_lines(c, id, lines + 3); }, 10000)) << id;
  }
  // The one that ended while ferryd was down: its real status (killed by SIGTERM).
  CmdResult w = c.ferry({"wait", ends_meanwhile, "--timeout", "20"});
  EXPECT_EQ(w.status, 128 + SIGTERM) << w.out << w.err;
  // Adopted tasks are whole tasks again: they migrate, take signals, end with their status.
  nlohmann::json m = c.migrate(homed_here, "node1");
  EXPECT_TRUE(m.value("ok", false)) << m.dump();
  for (auto& id : {homed_elsewhere, homed_here}) {
    ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
    CmdResult done = c.ferry({"wait", id, "--timeout", "30"});
    EXPECT_EQ(done.status, 0) << id << ": " << done.err;
    EXPECT_GT(sequential_lines(c.logs(id)), 3);
  }
}

TEST(NodeRestartTest, ATaskWhoseNodeRestartedIsLostAndEveryCommandSaysSo) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "4", "20"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 2); }, 10000));
  ASSERT_TRUE(c.migrate(id, "node2").value("ok", false));
  // node2 goes down with everything on it, and comes back as after a reboot.
  c.kill_node("node2");
  CmdResult start = c.ferry({"cluster", "start", "node2", "--dir", c.dir()});
  ASSERT_EQ(start.status, 0) << start.err;
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("state", "") == "lost"; }, 15000))
      << c.task(id).dump();
  EXPECT_NE(c.task(id).value("exit_reason", "").find("node node2 restarted"), std::string::npos)
      << c.task(id).dump();
  CmdResult w = c.ferry({"wait", id, "--timeout", "5"});
  EXPECT_EQ(w.status, 125) << w.out << w.err;
  EXPECT_NE(w.err.find("is lost"), std::string::npos) << w.err;
  CmdResult k = c.ferry({"kill", id});
  EXPECT_NE(k.status, 0);
  EXPECT_NE(k.err.find("is lost"), std::string::npos) << k.err;
  CmdResult mig = c.ferry({"migrate", id, "--to", "node1"});
  EXPECT_NE(mig.status, 0);
  EXPECT_NE(mig.err.find("is lost"), std::string::npos) << mig.err;
  CmdResult ps = c.ferry({"ps"});
  EXPECT_NE(ps.out.find("lost"), std::string::npos) << ps.out;
}

}  // namespace ferry::test
