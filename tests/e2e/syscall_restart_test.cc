// A call the freeze interrupted goes on as the kernel would have let it: a signal that reaches the
// process before the call runs again is handled first and, as for an ERESTARTNOHAND pause(),
// makes the call fail with EINTR. Re-executing the bare syscall instruction instead (the state an
// image records) would run the handler and then wait in pause() for a second signal: the target,
// which loops `while (!go) pause();`, would hang. Both tests queue the signal while the process is
// held, so the order is certain.
#include <signal.h>

#include <gtest/gtest.h>

#include "cr/dump.h"
#include "cr/restore.h"
#include "image/image_files.h"
#include "image/image_key.h"
#include "support/roundtrip.h"

namespace ferry::test {
namespace {

// (Needs root, as every e2e test: ptrace.)
TEST(SyscallRestartTest, ASignalQueuedWhileFrozenEndsTheCallWhenTheProcessResumes) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_vm_attrs", {"guard"});
  {
    cr::FrozenProcess frozen = cr::freeze_and_describe(pid);
    ASSERT_EQ(::kill(pid, SIGUSR2), 0);  // pending while it is held
    frozen.resume();
  }
  EXPECT_EQ(wait_exit(pid, 5000), 0) << rt.target_errors();
}

TEST(SyscallRestartTest, ASignalQueuedBeforeARestoredProcessRunsEndsTheCall) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_vm_attrs", {"guard"});
  rt.checkpoint(pid);
  image::LoadedImage img = image::load_image(rt.images(), image::host_image_key());
  ASSERT_NE(img.image.registers().restart().interrupted_with(), 0)
      << "the target was not frozen inside pause()";
  cr::RestoredProcess restored = cr::build_process(img, {});
  pid_t again = restored.pid();
  rt.guard.add(again);
  ASSERT_EQ(::kill(again, SIGUSR2), 0);  // pending before it runs a single instruction
  restored.release();
  EXPECT_EQ(wait_exit(again, 5000), 0) << rt.target_errors();
}

}  // namespace
}  // namespace ferry::test
