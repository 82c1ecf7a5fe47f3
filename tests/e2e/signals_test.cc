// Outstanding signals (issue 11): a signal sent to a task while it migrates is held where the task
// was and delivered once it runs again — every real-time signal, and a standard one — and a
// signal sent before or after reaches it directly. None is lost, none arrives twice.
#include <signal.h>

#include <gtest/gtest.h>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {

TEST(SignalsTest, SignalsSentWhileATaskMigratesAllArrive) {
  // The source's page stream pauses between frames: the migration lasts seconds.
  TestCluster c(2, {"--test-fault", "node1=slow-stream"});
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_sigcount"), "64", "20"});
  ASSERT_TRUE(wait_until([&] { return c.logs(id).find("line 3\n") != std::string::npos; }, 10000));
  TempDir io;
  pid_t m = migrate_in_background(c, io, id, "node2");
  ASSERT_TRUE(wait_until([&] { return c.task(id).value("state", "") == "migrating"; }, 10000))
      << c.task(id).dump();
  int held = 0;  // signals the command line was told would wait for the migration
  for (int i = 0; i < 50; i++) {
    CmdResult k = c.ferry({"kill", id, "RTMIN+1"});
    ASSERT_EQ(k.status, 0) << k.err;
    held += k.err.find("is migrating") != std::string::npos;
  }
  CmdResult usr1 = c.ferry({"kill", id, "USR1"});
  ASSERT_EQ(usr1.status, 0) << usr1.err;
  held += usr1.err.find("is migrating") != std::string::npos;
  EXPECT_EQ(wait_exit(m, 60000), 0) << read_file(io / "m.out") << read_file(io / "m.err");
  EXPECT_GT(held, 0) << "the migration ended before any signal was sent during it";
  EXPECT_EQ(c.task(id).value("node", ""), "node2") << c.task(id).dump();

  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  CmdResult w = c.ferry({"wait", id, "--timeout", "30"});
  EXPECT_EQ(w.status, 0) << w.out << w.err;
  std::string log = c.logs(id);
  EXPECT_NE(log.find("rt=50 usr1=1\n"), std::string::npos)
      << held
      << " held; the end of the log: " << log.substr(log.size() > 200 ? log.size() - 200 : 0);
}

}  // namespace ferry::test
