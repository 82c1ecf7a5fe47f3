// A process frozen inside a blocking system call resumes that call correctly after a restore.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "support/roundtrip.h"

namespace ferry::test {

TEST(BlockingTest, ReadOnAFifoCompletesWithDataWrittenAfterTheRestore) {
  RoundTrip rt;
  std::string fifo = rt.dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // The writer end stays with the test: the target blocks in read() on an empty FIFO.
  int w = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(w, 0);
  pid_t pid = rt.start_target("t_blocking", {"read", fifo});
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_GT(restored, 0);
  ASSERT_EQ(::write(w, "wake", 4), 4);
  EXPECT_EQ(wait_exit(restored, 20000), 0) << rt.target_errors();
  ::close(w);
}

// The sleep goes on with the time it had left, not from the start.
void sleep_resumes_with_time_left(const std::string& mode) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_blocking", {mode, "2000"});
  // Time passing is the point here: freeze it about 1.2 s into its 2 s sleep.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  rt.checkpoint(pid);
  auto t0 = std::chrono::steady_clock::now();
  pid_t restored = rt.restore();
  ASSERT_GT(restored, 0);
  EXPECT_EQ(wait_exit(restored, 20000), 0) << rt.target_errors();
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(ms, 1600) << "the sleep started over instead of going on";
  EXPECT_GT(ms, 400) << "the sleep ended early";
}

TEST(BlockingTest, NanosleepGoesOnWithTheTimeLeft) {
  sleep_resumes_with_time_left("nanosleep");
}
TEST(BlockingTest, ClockNanosleepGoesOnWithTheTimeLeft) {
  sleep_resumes_with_time_left("clock_nanosleep");
}

TEST(BlockingTest, PauseIsInterruptedByTheSignalAfterRestore) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_blocking", {"pause"});
  rt.checkpoint(pid);
  EXPECT_EQ(rt.verify(rt.restore()), 0) << rt.target_errors();
}

TEST(BlockingTest, SigsuspendKeepsTheRealSignalMask) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_blocking", {"sigsuspend"});
  rt.checkpoint(pid);
  EXPECT_EQ(rt.verify(rt.restore()), 0) << rt.target_errors();
}

TEST(BlockingTest, SigwaitinfoReceivesTheSignalSentAfterRestore) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_blocking", {"sigwait"});
  rt.checkpoint(pid);
  EXPECT_EQ(rt.verify(rt.restore()), 0) << rt.target_errors();
}

}  // namespace ferry::test
