#include "cr/dump_context.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "cr/ptrace/held_copy.h"
#include "util/error.h"

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

namespace {

long& arg(SyscallArgs& a, int n) {
  switch (n) {
    case 1:
      return a.a1;
    case 2:
      return a.a2;
    case 3:
      return a.a3;
    case 4:
      return a.a4;
    case 5:
      return a.a5;
    default:
      return a.a6;
  }
}

}  // namespace

void DumpContext::answer_queries(image::Image& img) {
  std::vector<Query> queries = std::move(queries_);
  queries_.clear();
  std::vector<char> out;
  for (Query& q : queries) {
    out.assign(q.out_len, 0);
    if (q.out_arg) arg(q.args, q.out_arg) = static_cast<long>(scratch());
    long r = syscall_out(q.nr, q.args, out.data(), out.size());
    q.then(img, r, out.data());
  }
}

pid_t DumpContext::answer_queries_and_fork(image::Image& img) {
  // The calls' outputs and results go below the code, the code below the safety net's frame. When
  // they do not fit (a process with hundreds of POSIX timers), they are answered one by one first.
  constexpr size_t kCodeRoom = kScratchSize / 2 - kBatchCodeOffset;
  size_t out_bytes = 0;
  for (const Query& q : queries_) out_bytes += (q.out_len + 7) & ~size_t{7};
  if (kArgsOffset + out_bytes + 8 * (queries_.size() + 1) > kBatchCodeOffset ||
      batch_then_fork_code_size(queries_.size()) > kCodeRoom)
    answer_queries(img);
  std::vector<Query> queries = std::move(queries_);
  queries_.clear();
  const uint64_t base = scratch() - kArgsOffset;
  uint64_t at = base + kArgsOffset;
  std::vector<BatchedCall> calls;
  std::vector<uint64_t> outs;
  for (Query& q : queries) {
    if (q.out_arg) arg(q.args, q.out_arg) = static_cast<long>(at);
    BatchedCall c;
    c.nr = q.nr;
    for (int n = 1; n <= 6; n++) c.args[n - 1] = arg(q.args, n);
    outs.push_back(at);
    at += (q.out_len + 7) & ~size_t{7};
    calls.push_back(c);
  }
  std::vector<long> results;
  pid_t copy =
      tracee().fork_held_copy_after(calls, base + kBatchCodeOffset, kCodeRoom, at, &results);
  try {
    std::vector<char> out(at - (base + kArgsOffset));
    if (!out.empty()) tracee().read_memory(base + kArgsOffset, out.data(), out.size());
    for (size_t i = 0; i < queries.size(); i++)
      queries[i].then(img, results[i], out.data() + (outs[i] - (base + kArgsOffset)));
  } catch (...) {
    HeldCopy end_it(copy);
    throw;
  }
  return copy;
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

RemoteMemory& DumpContext::memory() {
  if (!memory_) memory_.emplace(memory_pid());
  return *memory_;
}

void DumpContext::read_memory(uint64_t addr, void* data, size_t len) {
  if (!memory_pid_) return tracee().read_memory(addr, data, len);
  memory().read(addr, data, len, true);
}

void DumpContext::finish() {
  if (!scratch_) return;
  tracee_->remove_safety_net();
  scratch_->unmap();
  scratch_.reset();
}

}  // namespace ferry::cr
