// The copy a snapshot reads a task's memory from (issue 12): made by an injected fork while the
// task is frozen, held stopped, never run; the task runs on at once; the copy has the task's
// memory as it was at the fork, and it goes away with the object that holds it.
#include <signal.h>
#include <sys/uio.h>

#include <gtest/gtest.h>

#include "cr/dump.h"
#include "support/harness.h"
#include "support/wait_until.h"
#include "util/proc.h"

namespace ferry::test {
namespace {

char state_of(pid_t pid) {
  std::string stat = proc::try_read_file(proc::path(pid, "stat")).value_or("");
  auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

TEST(SnapshotCopyTest, AForkedCopyIsHeldWithTheTasksMemoryWhileTheTaskRunsOn) {
  // (Needs root, as every e2e test: ptrace.)
  pid_t pid = spawn({"/bin/sh", "-c", "i=0; while :; do i=$((i+1)); done"});
  ASSERT_GT(pid, 0);
  // Frozen before its exec, it would be a copy of this program, and its map would change after.
  const std::string self = proc::read_link("/proc/self/exe");
  ASSERT_TRUE(wait_until(
      [&] {
        auto exe = proc::try_read_link(proc::path(pid, "exe"));
        return exe && *exe != self;
      },
      5000));
  pid_t copy_pid = 0;
  {
    cr::FrozenProcess frozen = cr::freeze_and_describe(pid);
    std::unique_ptr<cr::HeldCopy> copy = frozen.fork_copy();
    copy_pid = copy->pid();
    ASSERT_NE(copy_pid, pid);
    std::string maps_task = read_file(proc::path(pid, "maps"));
    frozen.resume();
    // The task runs on; the copy stays stopped (traced), with the same layout.
    EXPECT_TRUE(wait_until([&] { return state_of(pid) == 'R'; }, 5000));
    EXPECT_EQ(state_of(copy_pid), 't');
    EXPECT_EQ(read_file(proc::path(copy_pid, "maps")), maps_task);
    // Its memory reads like the task's for what the task does not write (its code).
    const std::string first = maps_task.substr(0, maps_task.find('-'));
    uint64_t code = std::stoull(first, nullptr, 16);
    char a[64], b[64];
    iovec la{a, sizeof a}, lb{b, sizeof b}, r{reinterpret_cast<void*>(code), sizeof a};
    ASSERT_EQ(::process_vm_readv(pid, &la, 1, &r, 1, 0), 64);
    ASSERT_EQ(::process_vm_readv(copy_pid, &lb, 1, &r, 1, 0), 64);
    EXPECT_EQ(std::string(a, 64), std::string(b, 64));
  }
  EXPECT_FALSE(process_alive(copy_pid));
  EXPECT_TRUE(process_alive(pid));
  ::kill(pid, SIGKILL);
  wait_exit(pid, 5000);
}

}  // namespace
}  // namespace ferry::test
