// Transient network cuts: an eight-second partition between source and destination during a
// copy-on-reference task's lazy phase (both nodes alive, the source holding all its memory)
// costs the task nothing: the page stream reconnects and the push goes on; the peers see each
// other again within a couple of seconds of the link coming back.
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

void set_link(TestCluster& c, const std::string& veth, const char* state) {
  ASSERT_EQ(run_command({"ip", "-n", c.bridge_netns(), "link", "set", veth, state}).status, 0);
}

std::string state_of(TestCluster& c, const std::string& node, const std::string& via) {
  for (auto& n : c.nodes(via))
    if (n["name"] == node) return n["state"];
  return "";
}

}  // namespace

TEST(PartitionTest, ACopyOnReferenceTaskOutlivesAnEightSecondCutInItsLazyPhase) {
  // node1 sends one 256 KiB frame per 25 ms: 64 MiB take ~6 s to push, time to cut the link.
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "64", "20"}, "node1");
  ASSERT_TRUE(wait_until([&] { return has_lines(c, id, 3); }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2", "m", {"--strategy", "copy-on-reference"});
  // Committed: it runs at node2 and pulls its pages from node1.
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("node", "") == "node2"; }, 20000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  set_link(c, "v2", "down");
  std::this_thread::sleep_for(std::chrono::seconds(8));
  set_link(c, "v2", "up");
  auto healed = std::chrono::steady_clock::now();
  // The peers are back in about two seconds, both ways.
  EXPECT_TRUE(wait_until(
      [&] { return state_of(c, "node2", "node1") == "up" && state_of(c, "node1", "node2") == "up"; },
      10000));
  EXPECT_LT(std::chrono::steady_clock::now() - healed, std::chrono::milliseconds(3500));
  // The migration ends as it should have: every page came.
  EXPECT_EQ(wait_exit(m, 90000), 0) << read_file(io / "m.out") << read_file(io / "m.err");
  nlohmann::json r = nlohmann::json::parse(read_file(io / "m.out"));
  EXPECT_EQ(r["outcome"], "migrated") << r.dump();
  EXPECT_GT(r["freeze_ms"].get<double>(), 0) << r.dump();
  nlohmann::json t = c.task(id);
  EXPECT_EQ(t["state"], "running") << t.dump();
  EXPECT_EQ(t["node"], "node2") << t.dump();
  int lines = sequential_lines(c.logs(id));
  EXPECT_TRUE(wait_until([&] { return has_lines(c, id, lines + 3); }, 10000));
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "30"});
  EXPECT_EQ(w.status, 0) << "its memory is not intact: " << w.out << w.err;
}

}  // namespace ferry::test
