// A restore gives back exactly what was taken, or the checkpoint refuses before it freezes: one
// test per class of state that was once restored wrong without a word, or accepted at checkpoint
// and then impossible to restore (issue 9). Each target checks its own state after the restore.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/roundtrip.h"

namespace ferry::test {
namespace {

// Root: these targets make device nodes, set audit ids, change owners.
void round_trip(const std::string& target, std::vector<std::string> args) {
  target_survives_round_trip(target, std::move(args));
}

}  // namespace

// 0. Data that must not be lost.
TEST(FidelityTest, AFifoKeepsItsQueuedBytesWhenItsWriterIsGone) {
  round_trip("t_lost_data", {"fifo", "@DIR"});
}
TEST(FidelityTest, AnUnlinkedFileWithAnotherNameIsTheSameInode) {
  round_trip("t_lost_data", {"hardlink", "@DIR"});
}

// 1-3. What an open file carries besides its content.
TEST(FidelityTest, AnUnlinkedFileKeepsItsOwnerAndTimes) {
  round_trip("t_file_meta", {"ghost", "@DIR"});
}
TEST(FidelityTest, AMemfdKeepsItsMode) {
  round_trip("t_file_meta", {"memfd-mode"});
}
TEST(FidelityTest, AMemfdCanStillBeExecuted) {
  round_trip("t_file_meta", {"memfd-exec"});
}
TEST(FidelityTest, FlockLocksAreHeldByTheProcess) {
  round_trip("t_file_meta", {"flock", "@DIR"});
}

// 4 and 10. Regions with attributes of their own.
TEST(FidelityTest, ADroppableRegionStaysDroppable) {
  round_trip("t_vm_attrs", {"droppable"});
}
TEST(FidelityTest, GuardPagesStayGuards) {
  round_trip("t_vm_attrs", {"guard"});
}
TEST(FidelityTest, ForkAdviceRegionsKeepTheirAdviceAndContent) {
  round_trip("t_vm_attrs", {"fork-advice"});
}
TEST(FidelityTest, APrivateMappingPastTheEndOfAShmFile) {
  std::string path = "/dev/shm/ferry-fidelity-" + std::to_string(::getpid());
  round_trip("t_vm_attrs", {"shm-past-end", path});
  ::unlink(path.c_str());
}

// 5. Attributes kept by the kernel outside the address space.
TEST(FidelityTest, TheAuditLoginUidComesBack) {
  round_trip("t_proc_attrs", {"loginuid"});
}
TEST(FidelityTest, TheOomScoreAdjustmentComesBack) {
  round_trip("t_proc_attrs", {"oom"});
}
TEST(FidelityTest, MembarrierRegistrationsComeBack) {
  round_trip("t_proc_attrs", {"membarrier"});
}

// 7, 8, 10. Open files whose name is gone.
TEST(FidelityTest, ADeletedDeviceNode) {
  round_trip("t_gone_files", {"devnode", "@DIR"});
}
TEST(FidelityTest, AHungUpTerminal) {
  round_trip("t_gone_files", {"pty-gone"});
}
TEST(FidelityTest, UnlinkedFifos) {
  round_trip("t_gone_files", {"fifo", "@DIR"});
}
TEST(FidelityTest, ARemovedDirectory) {
  round_trip("t_gone_files", {"dir", "@DIR"});
}
TEST(FidelityTest, NamespaceDescriptors) {
  round_trip("t_gone_files", {"nsfd"});
}

// 9. Epoll watches that outlived their number.
TEST(FidelityTest, EpollWatchesUnderAReusedNumber) {
  round_trip("t_epoll_reuse", {"reuse"});
}
TEST(FidelityTest, EpollWatchesUnderAClosedNumber) {
  round_trip("t_epoll_reuse", {"closed"});
}

}  // namespace ferry::test
