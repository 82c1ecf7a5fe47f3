// signalfd: the signal mask it reads.
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cr/resources/files/file_kinds.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

void dump_signalfd(FdProbe& p, image::OpenFile* f) {
  f->mutable_signalfd()->set_mask(proc::parse_u64(p.info.at("sigmask"), 16));
}

UniqueFd open_signalfd(const image::OpenFile& f) {
  uint64_t mask = f.signalfd().mask();
  int flags = SFD_CLOEXEC | ((f.flags() & O_NONBLOCK) ? SFD_NONBLOCK : 0);
  UniqueFd fd(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, flags)));
  if (!fd) fail_errno(errno, "signalfd");
  return fd;
}

}  // namespace ferry::cr
