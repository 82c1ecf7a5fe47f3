// Each family of process state survives a checkpoint/restore round trip: the target program sets
// it up, and after the restore checks every piece of it itself (exit 0 = all intact).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include <gtest/gtest.h>

#include "support/roundtrip.h"
#include "support/wait_until.h"

namespace ferry::test {

// Checkpoint, restore, verify: the whole round trip for a self-checking target.
void round_trip(const std::string& target, std::vector<std::string> args = {},
                SpawnOptions opts = {}) {
  RoundTrip rt;
  for (auto& a : args)
    if (a == "@DIR") a = rt.dir.path();
  pid_t pid = rt.start_target(target, args, opts);
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_EQ(restored, pid);
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
  EXPECT_EQ(read_file(rt.out_path()), "OK\n");
}

TEST(ResourcesTest, RegistersAndVectorState) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_regs");
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  int st = rt.verify(restored);
  if (st == 77) GTEST_SKIP() << "no AVX-512 on this CPU";
  EXPECT_EQ(st, 0) << rt.target_errors();
}

TEST(ResourcesTest, SignalHandlersMaskPendingAndAltStack) {
  round_trip("t_signals");
}
TEST(ResourcesTest, IntervalAndPosixTimers) {
  round_trip("t_timers");
}
TEST(ResourcesTest, MmFieldsAndTaskAttributes) {
  SpawnOptions o;
  o.new_session = true;
  round_trip("t_task", {"@DIR"}, o);
}
TEST(ResourcesTest, CredentialsOfAnOrdinaryUserStayUnprivileged) {
  round_trip("t_creds");
}
TEST(ResourcesTest, FileDescriptorsOfEveryKind) {
  round_trip("t_files", {"@DIR"});
}

std::set<int> fd_numbers(pid_t pid) {
  std::set<int> out;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') out.insert(std::atoi(e->d_name));
  ::closedir(d);
  return out;
}

// Restoring passes descriptors into the new process and holds the low fd numbers with
// placeholders while it builds: none may stay behind in a gap of the original's numbers, and no
// number of the original may be missing.
TEST(ResourcesTest, TheRestoredProcessHoldsExactlyItsOwnDescriptors) {
  RoundTrip rt;
  pid_t pid = spawn({"/bin/sh", "-c", "exec 4</dev/null; exec sleep 60"});
  rt.guard.add(pid);
  std::set<int> want{0, 1, 2, 4};  // 3 is a gap
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file("/proc/" + std::to_string(pid) + "/comm") == "sleep\n" &&
               fd_numbers(pid) == want;
      },
      10000));
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_EQ(restored, pid);
  EXPECT_EQ(fd_numbers(restored), want);
  ::kill(restored, SIGKILL);
  EXPECT_EQ(wait_exit(restored, 5000), 128 + SIGKILL);
}

TEST(ResourcesTest, StaticProgramWithoutLibc) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  // Let it count a little, then checkpoint mid-run.
  for (int i = 0; i < 1000 && read_file(rt.out_path()).size() < 10; i++) ::usleep(2000);
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_GT(restored, 0);
  EXPECT_EQ(wait_exit(restored, 20000), 7);
  std::string expected;
  for (int i = 0; i < 60; i++) expected += std::to_string(i) + "\n";
  EXPECT_EQ(read_file(rt.out_path()), expected);
}

TEST(ResourcesTest, TerminalOnStdio) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  std::string slave_path = ::ptsname(master);
  int slave = ::open(slave_path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(slave, 0);
  RoundTrip rt;
  SpawnOptions o;
  o.tty_fd = slave;
  pid_t pid = rt.start_target("t_tty", {}, o);
  rt.checkpoint(pid);
  // ferry restore itself runs on the terminal, as a user at that terminal would run it.
  SpawnOptions fo;
  fo.tty_fd = slave;
  pid_t ferry_pid = spawn({ferry_bin(), "restore", "--images", rt.images(), "--detach"}, fo);
  ASSERT_EQ(wait_exit(ferry_pid, 30000), 0);
  ASSERT_TRUE(process_alive(pid));
  rt.guard.add(pid);
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
  std::string seen;
  char buf[256];
  ::fcntl(master, F_SETFL, O_NONBLOCK);
  ssize_t n;
  while ((n = ::read(master, buf, sizeof buf)) > 0) seen.append(buf, static_cast<size_t>(n));
  EXPECT_NE(seen.find("tty-ok"), std::string::npos) << "terminal output: " << seen;
  ::close(slave);
  ::close(master);
}


// A pipe to the outside on fd 1 becomes the restorer's own fd 1, whatever that is: here a file.
// The final check takes that fd's flags as the restorer's (a pipe end has no O_LARGEFILE, an
// opened file has), not as a difference from the image.
TEST(ResourcesTest, APipeToTheOutsideOnStdoutBecomesTheRestorersOwn) {
  become_subreaper();
  TempDir dir;
  ProcessGuard guard;
  const std::string pid_file = dir / "pid", images = dir / "images", out = dir / "restored.out";
  // The worker's stdout is a pipe to cat, outside the process. (It prints its first line, then
  // sleeps until SIGUSR2 asks it to check itself.)
  pid_t sh = spawn({"/bin/sh", "-c",
                    "{ " + target_path("t_worker") + " 1 100000 & echo $! > " + pid_file +
                        "; wait; } | cat > /dev/null"});
  guard.add(sh);
  ASSERT_TRUE(wait_until([&] { return read_file(pid_file).find('\n') != std::string::npos; },
                         5000));
  pid_t pid = std::atoi(read_file(pid_file).c_str());
  ASSERT_GT(pid, 0);
  guard.add(pid);
  auto exe_of = [](pid_t p) {
    char buf[4096];
    ssize_t n = ::readlink(("/proc/" + std::to_string(p) + "/exe").c_str(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  ASSERT_TRUE(wait_until([&] { return exe_of(pid) == target_path("t_worker"); }, 5000));
  CmdResult checkpoint = ferry({"checkpoint", std::to_string(pid), "--images", images});
  ASSERT_EQ(checkpoint.status, 0) << checkpoint.err;
  ASSERT_TRUE(wait_until([&] { return exe_of(pid).empty(); }, 5000));  // sh reaped it

  CmdResult restore = run_command({"/bin/sh", "-c",
                                   ferry_bin() + " restore --same-pid --detach --images " +
                                       images + " > " + out});
  ASSERT_EQ(restore.status, 0) << restore.err;
  EXPECT_EQ(exe_of(pid), target_path("t_worker"));
  char link[4096];
  ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/fd/1").c_str(), link, sizeof link);
  EXPECT_EQ(n > 0 ? std::string(link, static_cast<size_t>(n)) : "", out);
  ::kill(pid, SIGUSR2);
  EXPECT_EQ(wait_exit(pid, 10000), 0);
  // ferry's line (the pid), then the worker's own check, both in the restorer's file.
  EXPECT_EQ(read_file(out), std::to_string(pid) + "\nOK\n");
}

}  // namespace ferry::test
