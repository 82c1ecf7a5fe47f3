// The copy a snapshot reads a task's memory from (issue 12): made by an injected fork while the
// task is frozen, held stopped, never run; the task runs on at once; the copy has the task's
// memory as it was at the fork, and it goes away with the object that holds it.
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <cstdlib>

#include <gtest/gtest.h>

#include "cr/dump.h"
#include "image/image_files.h"
#include "image/image_key.h"
#include "support/harness.h"
#include "support/roundtrip.h"
#include "support/wait_until.h"
#include "util/proc.h"

namespace ferry::test {
namespace {

char state_of(pid_t pid) {
  std::string stat = proc::try_read_file(proc::path(pid, "stat")).value_or("");
  auto paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? '?' : stat[paren + 2];
}

// What a snapshot's freeze asks (task_recorder.cc): the copy describes what it shares.
cr::FreezeOptions as_a_snapshot() {
  cr::FreezeOptions o;
  o.keep_cpu_shared = o.inherited_from_copy = true;
  return o;
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
    cr::FrozenProcess frozen = cr::freeze_and_describe(pid, as_a_snapshot());
    std::unique_ptr<cr::HeldCopy> copy = frozen.fork_copy();
    copy_pid = copy->pid();
    ASSERT_NE(copy_pid, pid);
    std::string maps_task = read_file(proc::path(pid, "maps"));
    frozen.resume();
    // The task runs on; the copy stays stopped (traced), with the same layout once described
    // (the scratch memory it inherited, ferry's, is gone then).
    EXPECT_TRUE(wait_until([&] { return state_of(pid) == 'R'; }, 5000));
    EXPECT_EQ(state_of(copy_pid), 't');
    frozen.describe_inherited_from(*copy);
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

// Writing the copy's image reads its memory without making it the copy's own: process_vm_readv
// pins what it reads, and a pin of a page the copy shares with its task makes the kernel copy
// that page first, so the snapshot would hold the task's memory twice (and read it 2.5-4x
// slower). ferry reads shared pages through /proc/PID/mem (pagemap::maybe_shared).
TEST(SnapshotCopyTest, WritingTheCopysImageLeavesItsPagesSharedWithTheTask) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_bigmem", {"64"});
  cr::FrozenProcess frozen = cr::freeze_and_describe(pid, as_a_snapshot());
  std::unique_ptr<cr::HeldCopy> copy = frozen.fork_copy();
  frozen.resume();
  frozen.describe_inherited_from(*copy);
  frozen.read_pages_from(*copy);
  const uint64_t before = shared_pages(copy->pid());
  ASSERT_GE(before, 64u << 20 >> 12);  // the 64 MiB are shared with the task
  TempDir images;
  image::ImageWriter writer(images.path(), image::host_image_key());
  frozen.dump_pages(writer.pages());
  EXPECT_GE(writer.commit(frozen.image(), false), 64u << 20);
  // (The task runs on meanwhile: a page it writes is no longer shared, a few of its stack.)
  EXPECT_GT(shared_pages(copy->pid()), before - 256);
  copy.reset();
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

// A snapshot asks the calls that read timers and attributes inside the task together with its
// fork, in one go (DumpContext::answer_queries_and_fork): they must tell what the same calls
// run one by one (a checkpoint's way) tell.
TEST(SnapshotCopyTest, CallsAnsweredWithTheForkTellWhatCallsOneByOneTell) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_timers");
  image::Image one_by_one;
  {
    cr::FrozenProcess frozen = cr::freeze_and_describe(pid);
    one_by_one = frozen.image();
    frozen.resume();
  }
  cr::FrozenProcess frozen = cr::freeze_and_describe(pid, as_a_snapshot());
  std::unique_ptr<cr::HeldCopy> copy = frozen.fork_copy();
  const image::Image& batched = frozen.image();
  frozen.resume();

  ASSERT_EQ(batched.timers().itimers_size(), 2);  // real and prof
  ASSERT_EQ(batched.timers().itimers_size(), one_by_one.timers().itimers_size());
  for (int i = 0; i < 2; i++) {
    const image::ITimer &a = one_by_one.timers().itimers(i), &b = batched.timers().itimers(i);
    EXPECT_EQ(b.which(), a.which());
    EXPECT_EQ(b.interval_ns(), a.interval_ns());
    EXPECT_GT(b.value_ns(), 0u);
    EXPECT_LE(b.value_ns(), a.value_ns());  // (real time passed between the two)
  }
  ASSERT_EQ(batched.timers().posix_size(), 3);
  for (int i = 0; i < 3; i++) {
    const image::PosixTimer &a = one_by_one.timers().posix(i), &b = batched.timers().posix(i);
    EXPECT_EQ(b.id(), a.id());
    EXPECT_EQ(b.signo(), a.signo());
    EXPECT_EQ(b.interval_ns(), a.interval_ns());
    EXPECT_EQ(b.overrun(), a.overrun());
    EXPECT_GT(b.value_ns(), 0u);
  }
  EXPECT_NE(batched.attrs().clear_child_tid(), 0u);
  EXPECT_EQ(batched.attrs().clear_child_tid(), one_by_one.attrs().clear_child_tid());
  EXPECT_EQ(batched.attrs().pdeath_signal(), one_by_one.attrs().pdeath_signal());
  EXPECT_EQ(batched.attrs().child_subreaper(), one_by_one.attrs().child_subreaper());
  copy.reset();
  // The task ran on untouched: its timers still fire as set (it checks them itself).
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

// A task asking more calls than the scratch memory holds code and answers for (hundreds of POSIX
// timers) has them answered one by one, then forked: the same description, only a longer pause.
TEST(SnapshotCopyTest, CallsThatDoNotFitInOneGoAreAnsweredOneByOne) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_timers", {"600"});
  cr::FrozenProcess frozen = cr::freeze_and_describe(pid, as_a_snapshot());
  std::unique_ptr<cr::HeldCopy> copy = frozen.fork_copy();
  const image::Image& img = frozen.image();
  frozen.resume();
  ASSERT_EQ(img.timers().posix_size(), 603);
  for (const image::PosixTimer& t : img.timers().posix()) EXPECT_GT(t.value_ns(), 0u) << t.id();
  EXPECT_EQ(img.timers().itimers_size(), 2);
  copy.reset();
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

// ferry dies while the task runs the calls and the fork without a stop between them: the task
// comes back through the safety net with its registers and signal mask intact, and the copy it
// made (of ferry's making, untraced now) only exits, never runs the task's code.
TEST(SnapshotCopyTest, FerryDyingWhileTheForkRunsLeavesTheTaskIntactAndTheCopyOnlyExits) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_regs");
  pid_t tracer = ::fork();
  ASSERT_GE(tracer, 0);
  if (tracer == 0) {
    // Call 1 makes the scratch memory; the batch starts at call 2: ferry dies there.
    ::setenv("FERRY_TEST_CRASH_AT_SYSCALL", "2", 1);
    try {
      cr::FrozenProcess frozen = cr::freeze_and_describe(pid, as_a_snapshot());
      frozen.fork_copy();
    } catch (...) {
    }
    ::_exit(3);  // (not reached: the hook kills this process)
  }
  ASSERT_EQ(wait_exit(tracer, 20000), 128 + SIGKILL);
  // The copy is this test's child (the task's sibling): it ends on its own, with status 0.
  siginfo_t copy{};
  ASSERT_TRUE(wait_until(
      [&] {
        siginfo_t si{};
        if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
          return false;
        if (si.si_pid == pid) return false;
        copy = si;
        ::waitpid(si.si_pid, nullptr, 0);
        return true;
      },
      5000));
  EXPECT_EQ(copy.si_code, CLD_EXITED);
  EXPECT_EQ(copy.si_status, 0);
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(proc::path(pid, "status")).find("TracerPid:\t0") != std::string::npos;
      },
      5000));
  ASSERT_TRUE(process_alive(pid));
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

}  // namespace
}  // namespace ferry::test
