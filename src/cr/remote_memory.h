// Reading the pages of another process, without changing them.
//
// process_vm_readv is the fast way, but it pins what it reads, and the kernel (5.19 on) copies
// an anonymous page that another process maps too (a fork's parent or child, a snapshot's held
// copy) before it lets it be pinned: the process read would grow by every such page. Those are
// read through /proc/PID/mem, which does not pin. pagemap::maybe_shared() tells which they are.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "util/fd.h"

namespace ferry::cr {

class RemoteMemory {
 public:
  explicit RemoteMemory(pid_t pid) : pid_(pid) {}

  // Reads up to len bytes at addr into buf and returns how many were read: all of them, or up
  // to the first page that cannot be read (process_vm_readv, used unless `shared`, also stops
  // at memory the process cannot read itself, PROT_NONE; /proc/PID/mem reaches that).
  size_t read_some(uint64_t addr, void* buf, size_t len, bool shared);
  // All len bytes, or an error naming the process and the address.
  void read(uint64_t addr, void* buf, size_t len, bool shared);
  // Every span of `spans` (addresses in the process), one after the other into buf, or an
  // error: one process_vm_readv for them all unless `shared`.
  void read_spans(const std::vector<iovec>& spans, char* buf, bool shared);

 private:
  pid_t pid_;
  UniqueFd mem_;
};

}  // namespace ferry::cr
