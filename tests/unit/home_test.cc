// The home registry (node/home.h): the record of the tasks started on a node, wherever they run,
// kept on disk. Location updates are ordered by epoch; an end is final unless a newer epoch
// proves a lost task runs after all.
#include <gtest/gtest.h>

#include <thread>

#include "node/home.h"
#include "support/harness.h"
#include "util/error.h"

namespace ferry::node {
namespace {

rpc::TaskInfo task(const std::string& id, const std::string& node, uint64_t epoch) {
  rpc::TaskInfo t;
  t.set_id(id);
  t.set_home("node1");
  t.set_node(node);
  t.set_pid(100 + static_cast<int>(epoch));
  t.set_epoch(epoch);
  t.set_state(rpc::TASK_RUNNING);
  return t;
}

TEST(HomeRegistry, IdsAreNewAndGoOnAfterARestart) {
  test::TempDir dir;
  std::string file = dir / "home.pb";
  {
    HomeRegistry home("node1", file);
    EXPECT_EQ(home.new_id(), "node1.1");
    std::string second = home.new_id();
    EXPECT_EQ(second, "node1.2");
    home.add(task(second, "node1", 0));
  }
  HomeRegistry again("node1", file);
  ASSERT_TRUE(again.get("node1.2"));
  EXPECT_EQ(again.get("node1.2")->node(), "node1");
  EXPECT_EQ(again.new_id(), "node1.3");
}

TEST(HomeRegistry, AMoveWithAnOlderEpochIsIgnored) {
  test::TempDir dir;
  HomeRegistry home("node1", dir / "home.pb");
  home.add(task("node1.1", "node1", 0));
  home.moved(task("node1.1", "node3", 2));
  home.moved(task("node1.1", "node2", 1));  // arrives late
  EXPECT_EQ(home.get("node1.1")->node(), "node3");
  EXPECT_EQ(home.get("node1.1")->epoch(), 2u);
}

TEST(HomeRegistry, AnEndIsFinalButANewerEpochRevivesALostTask) {
  test::TempDir dir;
  HomeRegistry home("node1", dir / "home.pb");
  home.add(task("node1.1", "node1", 0));
  home.add(task("node1.2", "node1", 0));
  home.exited("node1.1", 3, "node1", 0);
  home.moved(task("node1.1", "node2", 1));
  EXPECT_EQ(home.get("node1.1")->state(), rpc::TASK_EXITED);
  EXPECT_EQ(home.get("node1.1")->exit_code(), 3);

  home.exited("node1.2", 0, "node1", 0, "its node died", true);
  EXPECT_EQ(home.get("node1.2")->state(), rpc::TASK_LOST);
  home.moved(task("node1.2", "node2", 1));  // it had moved after all
  EXPECT_EQ(home.get("node1.2")->state(), rpc::TASK_RUNNING);
  EXPECT_EQ(home.get("node1.2")->node(), "node2");
  EXPECT_TRUE(home.get("node1.2")->exit_reason().empty());
}

TEST(HomeRegistry, AnEndFromAnOlderEpochIsIgnored) {
  test::TempDir dir;
  HomeRegistry home("node1", dir / "home.pb");
  home.add(task("node1.1", "node1", 0));
  home.moved(task("node1.1", "node2", 1));
  home.exited("node1.1", 9, "node1", 0);  // the original's death, reported late
  EXPECT_EQ(home.get("node1.1")->state(), rpc::TASK_RUNNING);
}

TEST(HomeRegistry, WaitReturnsAtTheEndOrAtTheDeadline) {
  test::TempDir dir;
  HomeRegistry home("node1", dir / "home.pb");
  home.add(task("node1.1", "node1", 0));
  EXPECT_FALSE(home.wait_exit("node1.9", 10));
  auto still = home.wait_exit("node1.1", 20);
  ASSERT_TRUE(still);
  EXPECT_EQ(still->state(), rpc::TASK_RUNNING);
  std::thread ender([&] { home.exited("node1.1", 7, "node1", 0); });
  auto ended = home.wait_exit("node1.1", 10000);
  ender.join();
  ASSERT_TRUE(ended);
  EXPECT_EQ(ended->state(), rpc::TASK_EXITED);
  EXPECT_EQ(ended->exit_code(), 7);
}

TEST(HomeRegistry, ACorruptedRecordIsRefused) {
  test::TempDir dir;
  test::write_file(dir / "home.pb", "\xff\xff\xff not a record");
  try {
    HomeRegistry home("node1", dir / "home.pb");
    FAIL() << "a corrupted record was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupted"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ferry::node
