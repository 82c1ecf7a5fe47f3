// epoll: the set of watched fds with their events and data. The set is rebuilt inside the helper
// once every fd has its number, because epoll keys its entries by (fd number, file).
#include <sys/epoll.h>
#include <sys/syscall.h>

#include "cr/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

void dump_epoll(FdProbe& p, image::OpenFile* f) {
  image::Epoll* e = f->mutable_epoll();
  for (auto& line : p.info_lines) {
    if (line.rfind("tfd:", 0) != 0) continue;
    // "tfd:        6 events: 80000019 data:             1234  pos:0 ino:40e sdev:10"
    auto w = proc::split_ws(line);
    if (w.size() < 6 || w[2] != "events:" || w[4] != "data:")
      fail("malformed epoll entry '{}'", line);
    image::EpollTarget* t = e->add_targets();
    t->set_fd(static_cast<int32_t>(proc::parse_i64(w[1])));
    t->set_events(static_cast<uint32_t>(proc::parse_u64(w[3], 16)));
    t->set_data(proc::parse_u64(w[5], 16));
  }
}

UniqueFd open_epoll(const image::OpenFile&) {
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) fail_errno(errno, "epoll_create1");
  return fd;
}

void restore_epoll_targets(Restorer& r, int epoll_fd, const image::Epoll& e) {
  for (auto& t : e.targets()) {
    r.reset_stage();
    epoll_event ev{};
    // EPOLLERR and EPOLLHUP are always reported; the kernel shows them in fdinfo.
    ev.events = t.events() & ~static_cast<uint32_t>(EPOLLERR | EPOLLHUP);
    ev.data.u64 = t.data();
    uint64_t p = r.stage(&ev, sizeof ev);
    long rc =
        r.tracee().syscall(SYS_epoll_ctl, {epoll_fd, EPOLL_CTL_ADD, t.fd(), static_cast<long>(p)});
    if (rc < 0)
      fail_errno(static_cast<int>(-rc), "cannot watch fd {} with epoll fd {}", t.fd(), epoll_fd);
  }
}

}  // namespace ferry::cr
