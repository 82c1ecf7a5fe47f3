// eventfd: the counter and the semaphore flag travel.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cr/resources/files/file_kinds.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

void dump_eventfd(FdProbe& p, image::OpenFile* f) {
  image::EventFd* e = f->mutable_eventfd();
  e->set_count(proc::parse_u64(p.info.at("eventfd-count"), 16));
  auto sem = p.info.find("eventfd-semaphore");
  e->set_semaphore(sem != p.info.end() && sem->second == "1");
}

UniqueFd open_eventfd(const image::OpenFile& f) {
  int flags = EFD_CLOEXEC | (f.eventfd().semaphore() ? EFD_SEMAPHORE : 0) |
              ((f.flags() & O_NONBLOCK) ? EFD_NONBLOCK : 0);
  UniqueFd fd(::eventfd(0, flags));
  if (!fd) fail_errno(errno, "eventfd");
  uint64_t count = f.eventfd().count();
  if (count && ::write(fd.get(), &count, sizeof count) != sizeof count)
    fail_errno(errno, "cannot restore an eventfd counter");
  return fd;
}

}  // namespace ferry::cr
