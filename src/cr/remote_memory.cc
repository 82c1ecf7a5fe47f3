#include "cr/remote_memory.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

size_t RemoteMemory::read_some(uint64_t addr, void* buf, size_t len, bool shared) {
  if (!shared) {
    iovec local{buf, len}, remote{reinterpret_cast<void*>(addr), len};
    ssize_t n = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  if (!mem_) {
    mem_.reset(::open(proc::path(pid_, "mem").c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem_) fail_errno(errno, "cannot open memory of {}", pid_);
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(mem_.get(), static_cast<char*>(buf) + done, len - done,
                        static_cast<off_t>(addr + done));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void RemoteMemory::read(uint64_t addr, void* buf, size_t len, bool shared) {
  if (read_some(addr, buf, len, shared) != len)
    fail("cannot read memory of process {} at 0x{:x} ({} bytes)", pid_, addr, len);
}

void RemoteMemory::read_spans(const std::vector<iovec>& spans, char* buf, bool shared) {
  size_t total = 0;
  for (const iovec& s : spans) total += s.iov_len;
  if (shared) {
    for (const iovec& s : spans) {
      read(reinterpret_cast<uint64_t>(s.iov_base), buf, s.iov_len, true);
      buf += s.iov_len;
    }
    return;
  }
  iovec local{buf, total};
  ssize_t n = ::process_vm_readv(pid_, &local, 1, spans.data(), spans.size(), 0);
  if (n != static_cast<ssize_t>(total))
    fail_errno(n < 0 ? errno : EFAULT, "cannot read memory of process {} at 0x{:x}", pid_,
               spans.empty() ? 0 : reinterpret_cast<uint64_t>(spans.front().iov_base));
}

}  // namespace ferry::cr
