// Failures around a checkpoint or restore leave the process as it was and no image that looks
// complete: ferry killed in the middle, a full disk, and the exit status of a foreground restore.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "support/roundtrip.h"
#include "support/wait_until.h"

namespace ferry::test {

TEST(RobustnessTest, FerryKilledMidCheckpointLeavesTheProcessAndNoHalfImage) {
  std::mt19937 rng(7);
  for (int round = 0; round < 4; round++) {
    RoundTrip rt;
    pid_t pid = rt.start_target("t_bigmem", {"256"});
    SpawnOptions o;
    pid_t ferry_pid = spawn({ferry_bin(), "checkpoint", std::to_string(pid), "--images",
                             rt.images(), "--leave-running"},
                            o);
    // Somewhere between just started and well into the page dump.
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 120));
    ::kill(ferry_pid, SIGKILL);
    wait_exit(ferry_pid, 10000);
    // Complete or absent: never something in between.
    CmdResult show = ferry({"image", "verify", rt.images()});
    if (show.status != 0) {
      EXPECT_TRUE(show.err.find("no complete image") != std::string::npos ||
                  show.err.find("cannot open image directory") != std::string::npos)
          << show.err;
    }
    // The process runs on, whole, not stopped and not traced.
    ASSERT_TRUE(wait_until(
        [&] {
          return read_file("/proc/" + std::to_string(pid) + "/status").find("TracerPid:\t0") !=
                 std::string::npos;
        },
        5000));
    EXPECT_EQ(rt.verify(pid), 0) << "round " << round << ": " << rt.target_errors();
  }
}

// ferry dies at the syscall-entry stop of its Nth injected call, for every N a checkpoint makes:
// each time the process must go on with its registers, vector state and signal mask intact (it
// returns through the safety net's signal frame). Two calls run without the net: the first
// creates the scratch area that holds it, the last removes that area (docs/design.md).
void survives_ferry_dying_in_every_injected_call(const std::string& target) {
  RoundTrip rt;
  pid_t pid = rt.start_target(target);
  CmdResult probe = ferry({"checkpoint", std::to_string(pid), "--images", rt.dir / "probe",
                           "--leave-running", "--json"});
  ASSERT_EQ(probe.status, 0) << probe.err;
  auto at = probe.out.find("\"remote_syscalls\":");
  ASSERT_NE(at, std::string::npos);
  int calls = std::atoi(probe.out.c_str() + at + 18);
  ASSERT_GT(calls, 5);
  for (int n = 2; n < calls; n++) {
    SpawnOptions o;
    o.env = {"FERRY_TEST_CRASH_AT_SYSCALL=" + std::to_string(n)};
    o.stderr_path = rt.dir / "ferry.err";
    pid_t f = spawn({ferry_bin(), "checkpoint", std::to_string(pid), "--images", rt.dir / "img",
                     "--leave-running"},
                    o);
    ASSERT_EQ(wait_exit(f, 20000), 128 + SIGKILL) << "call " << n;
    ASSERT_TRUE(wait_until(
        [&] {
          return read_file("/proc/" + std::to_string(pid) + "/status").find("TracerPid:\t0") !=
                 std::string::npos;
        },
        5000));
    ASSERT_TRUE(process_alive(pid)) << "process died when ferry died in injected call " << n;
  }
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

TEST(RobustnessTest, FerryDyingInAnyInjectedCallLeavesRegistersIntact) {
  survives_ferry_dying_in_every_injected_call("t_regs");
}

TEST(RobustnessTest, FerryDyingInAnyInjectedCallLeavesSignalsIntact) {
  survives_ferry_dying_in_every_injected_call("t_signals");
}

TEST(RobustnessTest, FullDiskGivesOneClearErrorAndChangesNothing) {
  RoundTrip rt;
  ScopedTmpfs store(rt.dir / "small", "1m");
  const std::string& small = store.path();
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  CmdResult r = ferry({"checkpoint", std::to_string(pid), "--images", small + "/img"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  // No temporary file is left behind, and the process runs on intact.
  EXPECT_TRUE(std::filesystem::is_empty(small + "/img"));
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

TEST(RobustnessTest, ForegroundRestoreExitsWithTheProcessStatus) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  ASSERT_EQ(rt.checkpoint(pid).status, 0);
  CmdResult r = ferry({"restore", "--images", rt.images()});
  EXPECT_EQ(r.status, 7) << r.err;
}

TEST(RobustnessTest, ForegroundRestoreReportsADeathBySignal) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_bigmem", {"1"});
  ASSERT_EQ(rt.checkpoint(pid).status, 0);
  SpawnOptions o;
  o.stdout_path = rt.dir / "ferry.out";
  o.stderr_path = rt.dir / "ferry.err";
  pid_t ferry_pid = spawn({ferry_bin(), "restore", "--images", rt.images()}, o);
  // The restored process gets the original PID; a signal ferry receives is passed on to it.
  ASSERT_TRUE(wait_until(
      [&] {
        return process_alive(pid) &&
               read_file("/proc/" + std::to_string(pid) + "/status").find("TracerPid:\t0") !=
                   std::string::npos;
      },
      10000));
  ::kill(ferry_pid, SIGTERM);
  EXPECT_EQ(wait_exit(ferry_pid, 10000), 128 + SIGTERM) << read_file(rt.dir / "ferry.err");
}

}  // namespace ferry::test
