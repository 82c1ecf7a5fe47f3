#include "cr/resources/rseq.h"

#include <sys/ptrace.h>
#include <sys/syscall.h>

#include "cr/ptrace/tracee.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

constexpr int kPtraceGetRseqConfiguration = 0x420f;
struct RseqConfiguration {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};

}  // namespace

image::Rseq dump_rseq(Tracee& t) {
  RseqConfiguration c{};
  long n =
      ::ptrace(static_cast<__ptrace_request>(kPtraceGetRseqConfiguration), t.pid(), sizeof c, &c);
  if (n < 0) fail_errno(errno, "cannot read the rseq registration of {}", t.pid());
  image::Rseq out;
  if (c.rseq_abi_pointer) {
    out.set_ptr(c.rseq_abi_pointer);
    out.set_size(c.rseq_abi_size);
    out.set_signature(c.signature);
  }
  return out;
}

void restore_rseq(Restorer& r, const image::Rseq& rs) {
  if (!rs.ptr()) return;
  r.tracee().syscall_checked("rseq", SYS_rseq,
                             {static_cast<long>(rs.ptr()), static_cast<long>(rs.size()), 0,
                              static_cast<long>(rs.signature())});
}

void unregister_helper_rseq(Tracee& t) {
  image::Rseq rs = dump_rseq(t);
  if (!rs.ptr()) return;
  constexpr int kRseqFlagUnregister = 1;
  t.syscall_checked("rseq (unregister)", SYS_rseq,
                    {static_cast<long>(rs.ptr()), static_cast<long>(rs.size()), kRseqFlagUnregister,
                     static_cast<long>(rs.signature())});
}

}  // namespace ferry::cr
