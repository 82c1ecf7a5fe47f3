// Repeated use of the same process and the same image.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/roundtrip.h"
#include "support/wait_until.h"

namespace ferry::test {

TEST(CyclesTest, TenCheckpointRestoreCyclesOfOneProcess) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  for (int cycle = 0; cycle < 10; cycle++) {
    CmdResult c = rt.checkpoint(pid);
    ASSERT_EQ(c.status, 0) << "cycle " << cycle << ": " << c.err;
    pid_t restored = rt.restore();
    ASSERT_EQ(restored, pid) << "cycle " << cycle;
  }
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

// --json is one JSON object, with the image directory escaped whatever its name.
TEST(CyclesTest, TheCheckpointReportAsJson) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  std::string images = rt.dir.path() + "/a \"quoted\" dir";
  CmdResult c = ferry({"checkpoint", std::to_string(pid), "--images", images, "--json",
                       "--leave-running"});
  ASSERT_EQ(c.status, 0) << c.err;
  nlohmann::json j = nlohmann::json::parse(c.out);
  EXPECT_EQ(j["pid"], pid);
  EXPECT_EQ(j["images"], images);
  EXPECT_GT(j["pages_written"].get<uint64_t>(), 0u);
  EXPECT_GT(j["freeze_ms"].get<double>(), 0.0);
  EXPECT_EQ(j["left_running"], true);
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

TEST(CyclesTest, OneImageRestoredTwice) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  ASSERT_TRUE(wait_until([&] { return read_file(rt.out_path()).size() >= 20; }, 10000));
  rt.checkpoint(pid);
  std::string before = read_file(rt.out_path());
  pid_t first = rt.restore();
  ASSERT_EQ(wait_exit(first, 20000), 7);
  std::string after_first = read_file(rt.out_path());
  pid_t second = rt.restore();
  ASSERT_EQ(wait_exit(second, 20000), 7);
  std::string after_second = read_file(rt.out_path());
  // Each copy continued from the same point: the tail appears twice.
  std::string tail = after_first.substr(before.size());
  EXPECT_FALSE(tail.empty());
  EXPECT_EQ(after_second, after_first + tail);
}

TEST(CyclesTest, LeaveRunningThenRestoreASecondCopy) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  CmdResult c = rt.checkpoint(pid, {"--leave-running"});
  ASSERT_EQ(c.status, 0) << c.err;
  ASSERT_TRUE(process_alive(pid));
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  ASSERT_EQ(r.status, 0) << r.err;
  pid_t copy = static_cast<pid_t>(std::stoi(r.out));
  rt.guard.add(copy);
  EXPECT_NE(copy, pid);
  EXPECT_NE(r.err.find("was in use"), std::string::npos) << r.err;
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
  EXPECT_EQ(rt.verify(copy), 0) << rt.target_errors();
}

TEST(CyclesTest, SamePidRefusesATakenPid) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  ASSERT_EQ(rt.checkpoint(pid, {"--leave-running"}).status, 0);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach", "--same-pid"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("in use"), std::string::npos) << r.err;
  EXPECT_EQ(wait_exit(pid, 20000), 7);
}

}  // namespace ferry::test
