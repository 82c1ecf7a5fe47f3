// The Starter (issue 13): load sharing spreads an imbalanced load over nodes of half a CPU and
// finishes at least twice as fast as without it; balanced nodes move nothing; tasks talking
// across nodes are brought together; a drain empties a node that then refuses tasks; a refusing
// destination makes the source try the next; a task that cannot move is not proposed again and
// makes a drain fail naming it; the Starters go on when a node is down.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>

#include "e2e/snapshot_helpers.h"
#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

using Clock = std::chrono::steady_clock;

// Every node's decisions (`ferry events --json`), oldest first.
std::vector<nlohmann::json> events(TestCluster& c, const std::string& via = "") {
  std::vector<nlohmann::json> out;
  CmdResult r = c.ferry({"events", "--json"}, via);
  EXPECT_EQ(r.status, 0) << r.err;
  size_t at = 0;
  while (at < r.out.size()) {
    size_t nl = r.out.find('\n', at);
    if (nl == std::string::npos) nl = r.out.size();
    auto j = nlohmann::json::parse(r.out.substr(at, nl - at), nullptr, false);
    if (!j.is_discarded()) out.push_back(j);
    at = nl + 1;
  }
  return out;
}

int count_events(const std::vector<nlohmann::json>& all, const std::string& kind,
                 const std::string& task = "", const std::string& node = "") {
  int n = 0;
  for (auto& e : all)
    n += e.value("kind", "") == kind && (task.empty() || e.value("task", "") == task) &&
         (node.empty() || e.value("node", "") == node);
  return n;
}

std::string dump(const std::vector<nlohmann::json>& all) {
  std::string s;
  for (auto& e : all) s += e.dump() + "\n";
  return s;
}

// Iterations of t_cpu's loop in 10 ms of CPU on this machine.
uint64_t iters_per_unit() {
  CmdResult r = run_command({target_path("t_cpu"), "calibrate"});
  EXPECT_EQ(r.status, 0) << r.err;
  return std::max<uint64_t>(1000, std::strtoull(r.out.c_str(), nullptr, 10) * 10);
}

std::vector<std::string> start_cpu_tasks(TestCluster& c, int n, const std::string& node, int units,
                                         uint64_t iters, bool thread = false) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; i++) {
    std::vector<std::string> argv{target_path("t_cpu"), std::to_string(units),
                                  std::to_string(iters), "4"};
    if (thread) argv.push_back("thread");
    ids.push_back(c.run(argv, node));
    EXPECT_FALSE(ids.back().empty());
  }
  return ids;
}

// Waits for every task to end; the seconds from `start` to the last end.
double makespan(TestCluster& c, const std::vector<std::string>& ids, Clock::time_point start) {
  for (auto& id : ids) {
    CmdResult r = c.ferry({"wait", id}, "", 180000);
    EXPECT_EQ(r.status, 0) << id << ": " << r.out << r.err;
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A t_cpu log: "unit 10" .. "unit UNITS" in order, then the final line; returns that line.
std::string checked_cpu_log(TestCluster& c, const std::string& id, int units) {
  std::string log = c.logs(id);
  std::string expected;
  for (int n = 10; n <= units; n += 10) expected += "unit " + std::to_string(n) + "\n";
  EXPECT_EQ(log.substr(0, expected.size()), expected) << id;
  std::string last = log.substr(std::min(expected.size(), log.size()));
  EXPECT_EQ(last.rfind("done " + std::to_string(units) + " sum=", 0), 0u) << id << ": " << last;
  EXPECT_NE(last.find("memory ok"), std::string::npos) << id << ": " << last;
  return last;
}

std::string node_of(TestCluster& c, const std::string& id, const std::string& via = "") {
  return c.task(id, via).value("node", "");
}

TEST(PolicyTest, NodesHaveTheCapacityTheyWereGivenAndShowTheirDemand) {
  std::string group;
  {
    TestCluster c(2, {"--cpus", "0.5", "--memory", "256M", "--node-config", "node2:cpus=1.5"});
    ASSERT_TRUE(c.up());
    group = "/sys/fs/cgroup/cpu/ferry-" + c.id();
    std::string id =
        c.run({target_path("t_cpu"), "100000", std::to_string(iters_per_unit()), "4"}, "node1");
    nlohmann::json n1, n2;
    EXPECT_TRUE(wait_until(
        [&] {
          for (auto& n : c.nodes()) (n.value("name", "") == "node1" ? n1 : n2) = n;
          return n1.contains("load") && n1["load"].value("cpu_demand", 0.0) > 0.8;
        },
        10000, 100))
        << n1.dump();
    EXPECT_DOUBLE_EQ(n1["load"].value("cpu_capacity", 0.0), 0.5);
    EXPECT_DOUBLE_EQ(n2["load"].value("cpu_capacity", 0.0), 1.5);
    EXPECT_EQ(n1["load"].value("mem_limit_bytes", 0ull), 256ull << 20);
    // The kernel holds it to half a CPU (its tasks' group's quota; ferryd is not throttled),
    // and its demand is one task's.
    CmdResult r = run_command({"/bin/cat", group + "/node1/work/cpu.cfs_quota_us"});
    EXPECT_EQ(r.out, "50000\n");
    EXPECT_EQ(run_command({"/bin/cat", group + "/node1/cpu.cfs_quota_us"}).out, "-1\n");
    EXPECT_LE(n1["load"].value("cpu_demand", 0.0), 1.2);
  }
  // The cluster took its groups with it.
  EXPECT_NE(::access(group.c_str(), F_OK), 0) << group;
}

TEST(PolicyTest, LoadSharingSpreadsSixCpuBoundTasksWithinHalfAgainTheIdeal) {
  TestCluster c(3, {"--cpus", "0.5"});
  ASSERT_TRUE(c.up());
  const uint64_t iters = iters_per_unit();
  const int units = 200;  // 2 s of CPU each
  // Without the policy: all six share node1's half CPU.
  auto t0 = Clock::now();
  auto alone = start_cpu_tasks(c, 6, "node1", units, iters);
  const double without = makespan(c, alone, t0);
  std::string expected_last = checked_cpu_log(c, alone[0], units);
  // With it, in the same cluster.
  ASSERT_EQ(c.ferry({"policy", "set", "load-sharing", "on"}).status, 0);
  t0 = Clock::now();
  auto shared = start_cpu_tasks(c, 6, "node1", units, iters);
  const double with = makespan(c, shared, t0);
  // The ideal: all the work over all the capacity, i.e. a third of one node doing it all.
  const double ideal = without / 3;
  std::printf("makespan without %.1f s, with %.1f s, ideal %.1f s (%.2fx)\n", without, with, ideal,
              with / ideal);
  EXPECT_LE(with, 1.5 * ideal) << dump(events(c));
  EXPECT_LE(2 * with, without);
  for (auto& id : shared) {
    EXPECT_EQ(checked_cpu_log(c, id, units), expected_last);
    EXPECT_LE(c.task(id).value("moves", 99), 2) << id;
  }
  EXPECT_GE(count_events(events(c), "moved"), 2);
}

TEST(PolicyTest, BalancedNodesMoveNothing) {
  TestCluster c(2, {"--cpus", "0.5"});
  ASSERT_TRUE(c.up());
  const uint64_t iters = iters_per_unit();
  auto a = start_cpu_tasks(c, 2, "node1", 100000, iters);
  auto b = start_cpu_tasks(c, 2, "node2", 100000, iters);
  ASSERT_EQ(c.ferry({"policy", "set", "load-sharing", "on"}).status, 0);
  // Both Starters see their node overloaded and find no node with room: they decided, and
  // decided to leave everything where it is.
  EXPECT_TRUE(wait_until(
      [&] {
        auto all = events(c);
        return count_events(all, "gave-up", "", "node1") >= 1 &&
               count_events(all, "gave-up", "", "node2") >= 1;
      },
      30000, 200))
      << dump(events(c));
  auto all = events(c);
  EXPECT_EQ(count_events(all, "proposed"), 0) << dump(all);
  EXPECT_EQ(count_events(all, "moved"), 0) << dump(all);
  for (auto& id : a) EXPECT_EQ(node_of(c, id), "node1");
  for (auto& id : b) EXPECT_EQ(node_of(c, id), "node2");
}

TEST(PolicyTest, TasksStreamingAcrossNodesAreBroughtTogether) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  const int blocks = 1500;  // 64 KiB every 10 ms: about 6 MB/s for 15 s
  std::string job =
      start_job(c, dir, "stream",
                "tasks:\n  - name: gen\n    node: node1\n    command: [" + target_path("t_gen") +
                    ", \"" + std::to_string(blocks) +
                    "\", \"10\"]\n  - name: sum\n    node: node2\n    command: [sha256sum]\n"
                    "channels:\n  - from: gen:1\n    to: sum:0\n");
  ASSERT_FALSE(job.empty());
  std::map<std::string, std::string> id;  // name in the job -> task id
  nlohmann::json shown =
      nlohmann::json::parse(c.ferry({"job", "show", job, "--json"}).out, nullptr, false);
  ASSERT_FALSE(shown.is_discarded());
  for (auto& t : shown["tasks"]) id[t.value("name", "")] = t.value("id", "");
  ASSERT_EQ(id.size(), 2u);
  ASSERT_EQ(c.ferry({"policy", "set", "affinity", "on"}).status, 0);
  EXPECT_TRUE(
      wait_until([&] { return node_of(c, id["gen"]) == node_of(c, id["sum"]); }, 30000, 200))
      << dump(events(c));
  EXPECT_GE(count_events(events(c), "moved"), 1);
  CmdResult w = c.ferry({"wait", id["sum"]}, "", 120000);
  EXPECT_EQ(w.status, 0) << w.err;
  EXPECT_EQ(c.logs(id["sum"]).substr(0, 64), local_pipeline_hash(blocks, "cat"));
}

TEST(PolicyTest, DrainEmptiesANodeThatThenRefusesTasksUntilUndrained) {
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  std::string a = c.run({target_path("t_worker"), "8", "50"}, "node1");
  std::string b = c.run({target_path("t_worker"), "8", "50"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, a, 3) && has_lines(c, b, 3); }, 10000));
  CmdResult d = c.ferry({"drain", "node1", "--deadline", "60"}, "", 90000);
  EXPECT_EQ(d.status, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("2 tasks moved"), std::string::npos) << d.out;
  for (auto& id : {a, b}) {
    EXPECT_NE(node_of(c, id), "node1");
    int before = sequential_lines(c.logs(id));
    EXPECT_TRUE(wait_until([&] { return has_lines(c, id, before + 3); }, 10000)) << id;
    EXPECT_GT(sequential_lines(c.logs(id)), before);
  }
  // It takes nothing new, by run or by migration, and says so.
  CmdResult r = c.ferry({"run", "--node", "node1", "--", "/bin/true"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("draining"), std::string::npos) << r.err;
  nlohmann::json m = c.migrate(a, "node1");
  EXPECT_NE(m.value("outcome", ""), "migrated") << m.dump();
  EXPECT_NE(m.dump().find("draining"), std::string::npos) << m.dump();
  bool marked = false;
  for (auto& n : c.nodes())
    if (n.value("name", "") == "node1") marked = n["load"].value("draining", false);
  EXPECT_TRUE(marked);
  EXPECT_EQ(c.ferry({"undrain", "node1"}).status, 0);
  EXPECT_FALSE(c.run({"/bin/true"}, "node1").empty());
}

TEST(PolicyTest, WithAvailabilityOnANodeToldToStopMovesItsTasksOffFirst) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string a = c.run({target_path("t_worker"), "8", "50"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, a, 3); }, 10000));
  ASSERT_EQ(c.ferry({"policy", "set", "availability", "on", "deadline_s=30"}).status, 0);
  // Shut the node down as a machine's shutdown would: its init, then its ferryd, are told to stop.
  pid_t init = c.init_pid("node1");
  ASSERT_GT(init, 0);
  ASSERT_EQ(::kill(init, SIGTERM), 0);
  EXPECT_TRUE(wait_until([&] { return ::kill(init, 0) != 0; }, 40000)) << "node1 did not stop";
  // node1 is gone, and with it the task's home (its log): node2 shows the task running there,
  // and its own record of taking it.
  nlohmann::json t = c.task(a, "node2");
  EXPECT_EQ(t.value("node", ""), "node2") << t.dump();
  EXPECT_EQ(t.value("state", ""), "running") << t.dump();
  EXPECT_GE(count_events(events(c, "node2"), "accepts", a), 1) << dump(events(c, "node2"));
}

TEST(PolicyTest, WithCapabilitiesOnATaskLeavesANodeThatLostTheLabelItNeeds) {
  TestCluster c(3, {"--label", "node1:gpu=1", "--label", "node3:gpu=1"});
  ASSERT_TRUE(c.up());
  CmdResult run = c.ferry(
      {"run", "--on", "node1", "--label", "gpu=1", "--", target_path("t_worker"), "8", "50"});
  ASSERT_EQ(run.status, 0) << run.err;
  std::string a = run.out.substr(0, run.out.find('\n'));
  ASSERT_TRUE(wait_until([&] { return has_lines(c, a, 3); }, 10000));
  ASSERT_EQ(c.ferry({"policy", "set", "capabilities", "on"}).status, 0);
  // node1 loses its GPU: its ferryd comes back with a configuration without the label.
  const std::string conf = c.dir() + "/nodes/node1/ferryd.toml";
  std::string text = read_file(conf);
  size_t at = text.find("gpu");
  ASSERT_NE(at, std::string::npos) << text;
  size_t line = text.rfind('\n', at) + 1;
  text.erase(line, text.find('\n', at) - line + 1);
  write_file(conf, text);
  pid_t ferryd = c.ferryd_pid("node1");
  ASSERT_GT(ferryd, 0);
  ::kill(ferryd, SIGKILL);
  // (node1's ferryd comes back meanwhile: asked of node2.)
  EXPECT_TRUE(wait_until([&] { return node_of(c, a, "node2") == "node3"; }, 30000, 200))
      << dump(events(c, "node2"));
  EXPECT_GE(count_events(events(c, "node2"), "moved", a), 1);
  int before = sequential_lines(c.logs(a, "node2"));
  EXPECT_TRUE(wait_until([&] { return has_lines(c, a, before + 3, "node2"); }, 10000));
}

TEST(PolicyTest, ARefusingDestinationMakesTheSourceTryTheNext) {
  TestCluster c(3, {"--cpus", "0.5", "--test-fault", "node2=refuse-proposals"});
  ASSERT_TRUE(c.up());
  auto ids = start_cpu_tasks(c, 2, "node1", 100000, iters_per_unit());
  ASSERT_EQ(c.ferry({"policy", "set", "load-sharing", "on"}).status, 0);
  std::string moved;
  ASSERT_TRUE(wait_until(
      [&] {
        for (auto& id : ids)
          if (node_of(c, id) == "node3") moved = id;
        return !moved.empty();
      },
      30000, 200))
      << dump(events(c));
  // node2 was asked first (most room, first in order), refused with its reason, and node3 took
  // the task next.
  auto all = events(c);
  int refused_at = -1, moved_at = -1;
  for (size_t i = 0; i < all.size(); i++) {
    if (all[i].value("task", "") != moved) continue;
    if (all[i].value("kind", "") == "refused" && all[i].value("to", "") == "node2") {
      refused_at = static_cast<int>(i);
      EXPECT_NE(all[i].value("reason", "").find("test fault"), std::string::npos) << all[i];
    }
    if (all[i].value("kind", "") == "moved" && all[i].value("to", "") == "node3")
      moved_at = static_cast<int>(i);
  }
  EXPECT_GE(refused_at, 0) << dump(all);
  EXPECT_GT(moved_at, refused_at) << dump(all);
  EXPECT_GE(count_events(all, "refuses", moved, "node2"), 1) << dump(all);
}

TEST(PolicyTest, ATaskThatCannotMoveIsNotProposedAgainAndFailsADrainByName) {
  TestCluster c(2, {"--cpus", "0.5"});
  ASSERT_TRUE(c.up());
  auto ids = start_cpu_tasks(c, 2, "node1", 100000, iters_per_unit(), true);
  ASSERT_EQ(c.ferry({"policy", "set", "load-sharing", "on"}).status, 0);
  // Each is tried once, found unmovable, and then left out: a later look finds no candidate.
  EXPECT_TRUE(wait_until(
      [&] {
        auto all = events(c);
        return count_events(all, "unmovable") >= 2 &&
               count_events(all, "gave-up", "", "node1") >= 1;
      },
      40000, 200))
      << dump(events(c));
  // Several more looks (one a second) pass without a new proposal.
  auto before = events(c);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // (looks to come: nothing to await)
  auto after = events(c);
  for (auto& id : ids) {
    EXPECT_EQ(count_events(after, "proposed", id), 1) << dump(after);
    EXPECT_EQ(node_of(c, id), "node1");
  }
  EXPECT_EQ(count_events(after, "proposed"), count_events(before, "proposed"));
  CmdResult d = c.ferry({"drain", "node1", "--deadline", "20"}, "", 60000);
  EXPECT_NE(d.status, 0);
  for (auto& id : ids) EXPECT_NE(d.err.find(id), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("thread"), std::string::npos) << d.err;
  EXPECT_EQ(c.ferry({"undrain", "node1"}).status, 0);
}

TEST(PolicyTest, StartersGoOnWhenANodeIsDown) {
  TestCluster c(3, {"--cpus", "0.5"});
  ASSERT_TRUE(c.up());
  c.kill_node("node3");
  ASSERT_TRUE(wait_until(
      [&] {
        for (auto& n : c.nodes())
          if (n.value("name", "") == "node3") return n.value("state", "") == "down";
        return false;
      },
      20000, 100));
  auto ids = start_cpu_tasks(c, 2, "node1", 100000, iters_per_unit());
  ASSERT_EQ(c.ferry({"policy", "set", "load-sharing", "on"}).status, 0);
  EXPECT_TRUE(wait_until(
      [&] { return node_of(c, ids[0]) == "node2" || node_of(c, ids[1]) == "node2"; }, 30000, 200))
      << dump(events(c));
  EXPECT_EQ(count_events(events(c), "moved"), 1) << dump(events(c));
}

}  // namespace
}  // namespace ferry::test
