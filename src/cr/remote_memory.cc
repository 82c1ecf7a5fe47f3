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

}  // namespace ferry::cr
