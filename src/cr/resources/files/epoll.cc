// epoll: the set of watched fds with their events and data. The set is rebuilt inside the helper
// once every fd has its number, because epoll keys its entries by (fd number, file). A watch
// outlives its number: after `close(N)` the file may live on under another number, and N may be
// reused for another file watched too. Dump finds, for each watch, the number holding its file
// now (kcmp KCMP_EPOLL_TFD); restore puts that file at N for the time of the epoll_ctl() call.
// A watch whose file no process number holds any more cannot be rebuilt, and is refused before
// the process is frozen.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cr/resources/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

struct Watch {
  int fd = -1;
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t occurrence = 0;  // how many earlier watches share its number (kcmp's "toff")
};

std::vector<Watch> parse_watches(const std::vector<std::string>& info_lines) {
  std::vector<Watch> out;
  std::map<int, uint64_t> seen;
  for (auto& line : info_lines) {
    if (line.rfind("tfd:", 0) != 0) continue;
    // "tfd:        6 events: 80000019 data:             1234  pos:0 ino:40e sdev:10"
    auto w = proc::split_ws(line);
    if (w.size() < 6 || w[2] != "events:" || w[4] != "data:")
      fail("malformed epoll entry '{}'", line);
    Watch x;
    x.fd = static_cast<int>(proc::parse_i64(w[1]));
    x.events = static_cast<uint32_t>(proc::parse_u64(w[3], 16));
    x.data = proc::parse_u64(w[5], 16);
    x.occurrence = seen[x.fd]++;
    out.push_back(x);
  }
  return out;
}

// The fd number of `pid` holding the file of watch `w` of epoll fd `epfd`; -1 if none does.
int holder_of(pid_t pid, int epfd, const Watch& w, const std::vector<int>& fds) {
  kcmp_epoll_slot slot{static_cast<__u32>(epfd), static_cast<__u32>(w.fd),
                       static_cast<__u32>(w.occurrence)};
  auto same = [&](int n) { return ::syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, n, &slot) == 0; };
  if (same(w.fd)) return w.fd;
  for (int n : fds)
    if (n != w.fd && same(n)) return n;
  return -1;
}

std::vector<int> fd_numbers(pid_t pid) {
  std::vector<int> out;
  for (auto& n : proc::list_dir(proc::path(pid, "fd")))
    out.push_back(static_cast<int>(proc::parse_u64(n)));
  return out;
}

}  // namespace

std::string unsupported_epoll(pid_t pid, int epfd) {
  auto info = proc::try_read_file(proc::path(pid, fmt::format("fdinfo/{}", epfd)));
  if (!info) return "";
  std::vector<int> fds = fd_numbers(pid);
  for (auto& w : parse_watches(proc::split(*info, '\n')))
    if (holder_of(pid, epfd, w, fds) < 0)
      return fmt::format(
          "epoll fd {} watches a file registered as fd {} that the process no "
          "longer holds under any number; ferry cannot watch it again",
          epfd, w.fd);
  return "";
}

void dump_epoll(pid_t pid, FdProbe& p, image::OpenFile* f) {
  image::Epoll* e = f->mutable_epoll();
  std::vector<int> fds = fd_numbers(pid);
  for (auto& w : parse_watches(p.info_lines)) {
    int holder = holder_of(pid, p.num, w, fds);
    if (holder < 0)
      fail(
          "cannot checkpoint process {}: epoll fd {} watches a file registered as fd {} that "
          "the process no longer holds",
          pid, p.num, w.fd);
    image::EpollTarget* t = e->add_targets();
    t->set_fd(w.fd);
    t->set_events(w.events);
    t->set_data(w.data);
    t->set_holder_fd(holder);
  }
}

UniqueFd open_epoll(const image::OpenFile&) {
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) fail_errno(errno, "epoll_create1");
  return fd;
}

void restore_epoll_targets(Restorer& r, int epoll_fd, const image::Epoll& e,
                           const image::FileTable& ft) {
  Tracee& t = r.tracee();
  std::map<int, bool> cloexec;  // the numbers of the table and their close-on-exec flags
  for (auto& fd : ft.fds()) cloexec[fd.num()] = fd.cloexec();
  for (auto& w : e.targets()) {
    int holder = w.has_holder_fd() ? w.holder_fd() : w.fd();
    // The file goes under the watch's number for the call; what is there (if anything) is set
    // aside and put back after.
    long saved = -1;
    if (holder != w.fd()) {
      if (cloexec.count(w.fd()))
        saved =
            t.syscall_checked("fcntl(F_DUPFD_CLOEXEC)", SYS_fcntl, {w.fd(), F_DUPFD_CLOEXEC, 0});
      t.syscall_checked("dup3", SYS_dup3, {holder, w.fd(), O_CLOEXEC});
    }
    r.reset_stage();
    epoll_event ev{};
    // EPOLLERR and EPOLLHUP are always reported; the kernel shows them in fdinfo.
    ev.events = w.events() & ~static_cast<uint32_t>(EPOLLERR | EPOLLHUP);
    ev.data.u64 = w.data();
    uint64_t p = r.stage(&ev, sizeof ev);
    long rc = t.syscall(SYS_epoll_ctl, {epoll_fd, EPOLL_CTL_ADD, w.fd(), static_cast<long>(p)});
    if (holder != w.fd()) {
      if (saved >= 0) {
        t.syscall_checked("dup3", SYS_dup3, {saved, w.fd(), cloexec.at(w.fd()) ? O_CLOEXEC : 0});
        t.syscall(SYS_close, {saved});
      } else {
        t.syscall(SYS_close, {w.fd()});
      }
    }
    if (rc < 0)
      fail_errno(static_cast<int>(-rc), "cannot watch fd {} with epoll fd {}", w.fd(), epoll_fd);
  }
}

}  // namespace ferry::cr
