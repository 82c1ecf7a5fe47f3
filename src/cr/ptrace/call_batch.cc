#include "cr/ptrace/call_batch.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

namespace ferry::cr {
namespace {

class Code {
 public:
  void bytes(std::initializer_list<uint8_t> b) { out_.insert(out_.end(), b); }
  void imm32(uint32_t v) { raw(&v, sizeof v); }
  void imm64(uint64_t v) { raw(&v, sizeof v); }
  // mov $nr, %eax (zero-extends into %rax)
  void mov_eax(uint32_t v) {
    bytes({0xb8});
    imm32(v);
  }
  // movabs $v into the argument register `arg` (1..6: rdi, rsi, rdx, r10, r8, r9)
  void mov_arg(int arg, uint64_t v) {
    static const uint8_t kRex[] = {0x48, 0x48, 0x48, 0x49, 0x49, 0x49};
    static const uint8_t kOp[] = {0xbf, 0xbe, 0xba, 0xba, 0xb8, 0xb9};
    bytes({kRex[arg - 1], kOp[arg - 1]});
    imm64(v);
  }
  void syscall() { bytes({0x0f, 0x05}); }
  // movabs %rax, (addr)
  void store_rax(uint64_t addr) {
    bytes({0x48, 0xa3});
    imm64(addr);
  }
  void ud2() { bytes({0x0f, 0x0b}); }
  void call(long nr, const long (&args)[6]) {
    mov_eax(static_cast<uint32_t>(nr));
    for (int a = 1; a <= 6; a++) mov_arg(a, static_cast<uint64_t>(args[a - 1]));
    syscall();
  }
  size_t size() const { return out_.size(); }
  std::vector<uint8_t> take() { return std::move(out_); }
  void append(const Code& c) { out_.insert(out_.end(), c.out_.begin(), c.out_.end()); }

 private:
  void raw(const void* p, size_t n) {
    auto b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::vector<uint8_t> out_;
};

}  // namespace

std::vector<uint8_t> batch_then_fork_code(const std::vector<BatchedCall>& calls, uint64_t results,
                                          pid_t pid, unsigned long clone_flags) {
  Code code;
  for (size_t i = 0; i < calls.size(); i++) {
    code.call(calls[i].nr, calls[i].args);
    code.store_rax(results + 8 * i);
  }
  code.call(SYS_clone, {static_cast<long>(clone_flags), 0, 0, 0, 0, 0});
  code.store_rax(results + 8 * calls.size());

  Code parent;  // back to the state of the stop
  parent.mov_eax(SYS_rt_sigreturn);
  parent.syscall();
  parent.ud2();
  Code failed;  // the tracer sees this stop; without one, SIGCONT lets it go back as above
  failed.call(SYS_tgkill, {pid, pid, SIGSTOP, 0, 0, 0});
  failed.append(parent);
  Code child;
  child.mov_eax(SYS_exit_group);
  child.bytes({0x31, 0xff});  // xor %edi, %edi
  child.syscall();
  child.ud2();

  code.bytes({0x48, 0x85, 0xc0});                                               // test %rax, %rax
  code.bytes({0x74, static_cast<uint8_t>(2 + parent.size() + failed.size())});  // jz child
  code.bytes({0x78, static_cast<uint8_t>(parent.size())});                      // js failed
  code.append(parent);
  code.append(failed);
  code.append(child);
  return code.take();
}

size_t batch_then_fork_code_size(size_t count) {
  return batch_then_fork_code(std::vector<BatchedCall>(count), 0, 0, 0).size();
}

}  // namespace ferry::cr
