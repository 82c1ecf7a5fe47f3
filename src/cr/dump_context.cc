#include "cr/dump_context.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

Tracee& DumpContext::tracee() {
  if (!tracee_) fail("internal: process {} is not held", pid_);
  return *tracee_;
}

uint64_t DumpContext::scratch() {
  if (!scratch_) {
    // The one injected call without a safety net: the mmap that creates it.
    scratch_.emplace(tracee(), kScratchSize, PROT_READ | PROT_WRITE | PROT_EXEC);
    tracee_->install_safety_net(scratch_->addr(), kScratchSize);
  }
  return scratch_->addr() + kArgsOffset;
}

long DumpContext::syscall_out(long nr, SyscallArgs args, void* out, size_t len) {
  scratch();
  long r = tracee_->syscall(nr, args);
  if (r >= 0 && out && len) tracee_->read_memory(scratch(), out, len);
  return r;
}

UniqueFd DumpContext::steal_fd(int num) {
  if (!pidfd_) {
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid(), 0)));
    if (!pidfd_) fail_errno(errno, "pidfd_open({})", pid());
  }
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd_.get(), num, 0)));
  if (!fd) fail_errno(errno, "cannot reach fd {} of process {}", num, pid());
  return fd;
}

void DumpContext::read_memory(uint64_t addr, void* data, size_t len) {
  if (!memory_pid_) return tracee().read_memory(addr, data, len);
  proc::read_process_memory(copy_mem_, O_RDONLY, memory_pid_, addr, data, len);
}

void DumpContext::finish() {
  if (!scratch_) return;
  tracee_->remove_safety_net();
  scratch_->unmap();
  scratch_.reset();
}

}  // namespace ferry::cr
