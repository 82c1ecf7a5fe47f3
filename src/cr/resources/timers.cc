#include "cr/resources/timers.h"

#include <signal.h>
#include <sys/syscall.h>

#include <sys/time.h>
#include <time.h>
#include <cstring>

#include <algorithm>
#include <vector>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr int kPrTimerCreateRestoreIds = 77;
constexpr int kRestoreIdsOff = 0;
constexpr int kRestoreIdsOn = 1;

int64_t ns_of(const timeval& tv) {
  return tv.tv_sec * 1000000000ll + tv.tv_usec * 1000ll;
}
int64_t ns_of(const timespec& ts) {
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
timeval tv_of(int64_t ns) {
  return {ns / 1000000000ll, (ns % 1000000000ll) / 1000};
}
timespec ts_of(int64_t ns) {
  return {ns / 1000000000ll, ns % 1000000000ll};
}

// The kernel's sigevent layout (64 bytes).
struct KernelSigevent {
  uint64_t value;
  int32_t signo;
  int32_t notify;
  int32_t tid;
  int32_t pad[11];
};
static_assert(sizeof(KernelSigevent) == 64);

// /proc/PID/timers: "ID: n", "signal: signo/value", "notify: kind/pid.N" or "kind/tid.N", "ClockID:
// c".
std::vector<image::PosixTimer> read_posix_timers(pid_t pid) {
  std::vector<image::PosixTimer> out;
  auto text = proc::try_read_file(proc::path(pid, "timers"));
  if (!text) return out;
  for (auto& line : proc::split(*text, '\n')) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string val(proc::trim(line.substr(colon + 1)));
    if (key == "ID") {
      out.emplace_back().set_id(static_cast<int32_t>(proc::parse_i64(val)));
    } else if (out.empty()) {
      continue;
    } else if (key == "signal") {
      auto slash = val.find('/');
      out.back().set_signo(static_cast<int32_t>(proc::parse_i64(val.substr(0, slash))));
      out.back().set_sigval(proc::parse_u64(val.substr(slash + 1), 16));
    } else if (key == "notify") {
      auto slash = val.find('/');
      std::string kind = val.substr(0, slash);
      std::string who = val.substr(slash + 1);
      int notify = kind == "signal" ? SIGEV_SIGNAL : kind == "none" ? SIGEV_NONE : SIGEV_THREAD;
      if (who.rfind("tid.", 0) == 0) notify |= SIGEV_THREAD_ID;
      if (notify == SIGEV_THREAD)
        fail("POSIX timer {} notifies a thread (SIGEV_THREAD): threads are not supported",
             out.back().id());
      out.back().set_notify(notify);
      out.back().set_notify_tid(static_cast<int32_t>(proc::parse_i64(who.substr(4))));
    } else if (key == "ClockID") {
      out.back().set_clock_id(static_cast<int32_t>(proc::parse_i64(val)));
    }
  }
  return out;
}

}  // namespace

void dump_timers(DumpContext& ctx, image::Image& img) {
  img.clear_timers();
  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF})
    ctx.ask({SYS_getitimer,
             {which},
             2,
             sizeof(itimerval),
             [which](image::Image& img, long r, const char* out) {
               if (r < 0) fail_errno(static_cast<int>(-r), "getitimer");
               itimerval v{};
               std::memcpy(&v, out, sizeof v);
               if (!v.it_value.tv_sec && !v.it_value.tv_usec && !v.it_interval.tv_sec &&
                   !v.it_interval.tv_usec)
                 return;
               image::ITimer* t = img.mutable_timers()->add_itimers();
               t->set_which(which);
               t->set_value_ns(ns_of(v.it_value));
               t->set_interval_ns(ns_of(v.it_interval));
             }});
  for (image::PosixTimer& p : read_posix_timers(ctx.pid())) {
    ctx.ask({SYS_timer_gettime,
             {p.id()},
             2,
             sizeof(itimerspec),
             [p](image::Image& img, long r, const char* out) {
               if (r < 0) fail_errno(static_cast<int>(-r), "timer_gettime({})", p.id());
               itimerspec its{};
               std::memcpy(&its, out, sizeof its);
               image::PosixTimer* t = img.mutable_timers()->add_posix();
               *t = p;
               t->set_value_ns(ns_of(its.it_value));
               t->set_interval_ns(ns_of(its.it_interval));
             }});
    // (Right after its timer_gettime, whose answer added the timer last.)
    ctx.ask(
        {SYS_timer_getoverrun, {p.id()}, 0, 0, [](image::Image& img, long r, const char*) {
           image::Timers* t = img.mutable_timers();
           t->mutable_posix(t->posix_size() - 1)->set_overrun(r > 0 ? static_cast<int32_t>(r) : 0);
         }});
  }
}

void restore_timers(Restorer& r, const image::Timers& timers, int original_pid) {
  Tracee& t = r.tracee();
  for (auto& it : timers.itimers()) {
    r.reset_stage();
    itimerval v{tv_of(it.interval_ns()), tv_of(it.value_ns())};
    if (!v.it_value.tv_sec && !v.it_value.tv_usec && it.value_ns() > 0) v.it_value.tv_usec = 1;
    t.syscall_checked("setitimer", SYS_setitimer,
                      {it.which(), static_cast<long>(r.stage(&v, sizeof v)), 0});
  }
  if (timers.posix_size() == 0) return;
  std::vector<image::PosixTimer> sorted(timers.posix().begin(), timers.posix().end());
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.id() < b.id(); });
  bool by_id = t.syscall(SYS_prctl, {kPrTimerCreateRestoreIds, kRestoreIdsOn, 0, 0, 0}) == 0;
  for (auto& p : sorted) {
    r.reset_stage();
    KernelSigevent sev{};
    sev.value = p.sigval();
    sev.signo = p.signo();
    sev.notify = p.notify();
    // A timer aimed at the process's own thread follows it to its new pid.
    sev.tid = p.notify_tid() == original_pid ? r.pid() : p.notify_tid();
    uint64_t remote_sev = r.stage(&sev, sizeof sev);
    int32_t id = p.id();
    uint64_t remote_id = r.stage(&id, sizeof id);
    t.syscall_checked("timer_create", SYS_timer_create,
                      {p.clock_id(), static_cast<long>(remote_sev), static_cast<long>(remote_id)});
    int32_t got = -1;
    t.read_memory(remote_id, &got, sizeof got);
    if (got != p.id())
      fail("POSIX timer {} came back as timer {} (this kernel cannot choose timer ids)", p.id(),
           got);
    itimerspec its{ts_of(p.interval_ns()), ts_of(p.value_ns())};
    t.syscall_checked("timer_settime", SYS_timer_settime,
                      {p.id(), 0, static_cast<long>(r.stage(&its, sizeof its)), 0});
  }
  if (by_id) t.syscall(SYS_prctl, {kPrTimerCreateRestoreIds, kRestoreIdsOff, 0, 0, 0});
}

}  // namespace ferry::cr
