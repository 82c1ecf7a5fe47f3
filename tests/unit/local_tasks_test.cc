// A snapshot's pause of a task and a migration of it exclude each other (both trace the task):
// a migration waits for the pause to end, and no pause begins once the task migrates.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "node/tasks.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

rpc::TaskInfo task(const std::string& id) {
  rpc::TaskInfo info;
  info.set_id(id);
  info.set_pid(::getpid());
  return info;
}

TEST(LocalTasks, AMigrationWaitsForASnapshotsPauseOfTheTask) {
  node::LocalTasks tasks;
  tasks.add(task("n.1"), 1);
  ASSERT_TRUE(tasks.begin_recording("n.1", ::getpid()));
  EXPECT_TRUE(tasks.held(::getpid()));
  std::atomic<bool> began{false};
  std::string why = "not yet";
  std::thread migration([&] {
    why = tasks.begin_migration("n.1");
    began = true;
  });
  // It has not begun while the pause lasts (the thread is given 200 ms to run ahead).
  EXPECT_FALSE(wait_until([&] { return began.load(); }, 200));
  tasks.end_recording("n.1", ::getpid());
  EXPECT_TRUE(wait_until([&] { return began.load(); }, 5000));
  migration.join();
  EXPECT_EQ(why, "");
  EXPECT_FALSE(tasks.held(::getpid()));
  // And while it migrates, no pause begins; a second migration is refused with the reason.
  EXPECT_FALSE(tasks.begin_recording("n.1", ::getpid()));
  EXPECT_EQ(tasks.begin_migration("n.1"), "task n.1 is already migrating");
  EXPECT_EQ(tasks.begin_migration("n.9"), "task n.9 is not here");
  EXPECT_FALSE(tasks.begin_recording("n.9", ::getpid()));
}

// Two holders of one process (a migration's and a pause's hold): it stays held until both let go.
TEST(LocalTasks, AProcessHeldTwiceStaysHeldUntilBothLetGo) {
  node::LocalTasks tasks;
  tasks.add(task("n.1"), 1);
  tasks.hold(::getpid());
  ASSERT_TRUE(tasks.begin_recording("n.1", ::getpid()));
  tasks.end_recording("n.1", ::getpid());
  EXPECT_TRUE(tasks.held(::getpid()));
  tasks.unhold(::getpid());
  EXPECT_FALSE(tasks.held(::getpid()));
  tasks.unhold(::getpid());  // (one more let-go than holds changes nothing)
  EXPECT_FALSE(tasks.held(::getpid()));
}

}  // namespace
}  // namespace ferry::test
