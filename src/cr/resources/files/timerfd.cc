// timerfd: clock, time left, interval, and expirations not read yet (TFD_IOC_SET_TICKS).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "cr/resources/files/file_kinds.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

// "(sec, nsec)"
int64_t parse_pair_ns(const std::string& s) {
  auto open = s.find('('), comma = s.find(','), close = s.find(')');
  if (open == std::string::npos || comma == std::string::npos || close == std::string::npos)
    fail("malformed timerfd time '{}'", s);
  return static_cast<int64_t>(proc::parse_u64(s.substr(open + 1, comma - open - 1))) *
             1000000000ll +
         static_cast<int64_t>(proc::parse_u64(s.substr(comma + 1, close - comma - 1)));
}

constexpr unsigned long kTfdIocSetTicks = _IOW('T', 0, uint64_t);

}  // namespace

void dump_timerfd(FdProbe& p, image::OpenFile* f) {
  image::TimerFd* t = f->mutable_timerfd();
  t->set_clock_id(static_cast<int32_t>(proc::parse_i64(p.info.at("clockid"))));
  t->set_ticks(proc::parse_u64(p.info.at("ticks")));
  t->set_settime_flags(static_cast<int32_t>(proc::parse_u64(p.info.at("settime flags"), 8)));
  t->set_value_ns(parse_pair_ns(p.info.at("it_value")));
  t->set_interval_ns(parse_pair_ns(p.info.at("it_interval")));
}

UniqueFd open_timerfd(const image::OpenFile& f) {
  const image::TimerFd& t = f.timerfd();
  UniqueFd fd(
      ::timerfd_create(t.clock_id(), TFD_CLOEXEC | ((f.flags() & O_NONBLOCK) ? TFD_NONBLOCK : 0)));
  if (!fd) fail_errno(errno, "timerfd_create");
  if (t.value_ns() || t.interval_ns()) {
    itimerspec its{{t.interval_ns() / 1000000000ll, t.interval_ns() % 1000000000ll},
                   {t.value_ns() / 1000000000ll, t.value_ns() % 1000000000ll}};
    int flags = 0;
    if (t.settime_flags() & TFD_TIMER_ABSTIME) {
      // fdinfo shows the time left; an absolute timer is re-armed at now + left.
      timespec now;
      clock_gettime(t.clock_id(), &now);
      int64_t at = now.tv_sec * 1000000000ll + now.tv_nsec + t.value_ns();
      its.it_value = {at / 1000000000ll, at % 1000000000ll};
      flags = t.settime_flags();
    }
    if (::timerfd_settime(fd.get(), flags, &its, nullptr) != 0)
      fail_errno(errno, "timerfd_settime");
  }
  uint64_t ticks = t.ticks();
  if (ticks && ::ioctl(fd.get(), kTfdIocSetTicks, &ticks) != 0)
    fail_errno(errno, "cannot restore {} pending timerfd expirations", ticks);
  return fd;
}

}  // namespace ferry::cr
