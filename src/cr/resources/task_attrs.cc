#include "cr/resources/task_attrs.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr long kMembarrierGetRegistrations = 1 << 9;  // MEMBARRIER_CMD_GET_REGISTRATIONS (6.3)

// Inside the helper, before its credentials drop (changing it needs CAP_AUDIT_CONTROL, and only
// a process may set its own).
void restore_loginuid(Restorer& r, uint32_t loginuid) {
  auto now = proc::try_read_file("/proc/self/loginuid");
  if (now && proc::parse_u64(std::string(proc::trim(*now))) == loginuid) return;
  Tracee& t = r.tracee();
  r.reset_stage();
  uint64_t path = r.stage_string("/proc/self/loginuid");
  std::string text = std::to_string(loginuid);
  uint64_t value = r.stage(text.data(), text.size());
  long fd = t.syscall_checked("open(/proc/self/loginuid)", SYS_openat,
                              {AT_FDCWD, static_cast<long>(path), O_WRONLY | O_CLOEXEC});
  long n = t.syscall(SYS_write, {fd, static_cast<long>(value), static_cast<long>(text.size())});
  t.syscall(SYS_close, {fd});
  if (n != static_cast<long>(text.size()))
    fail_errno(n < 0 ? static_cast<int>(-n) : EIO, "cannot set the audit login uid to {}",
               loginuid);
}

// Each REGISTER_* command bit in `mask` is itself the command that registers it.
void restore_membarrier(Restorer& r, uint32_t mask) {
  for (uint32_t bit = 1; bit && bit <= mask; bit <<= 1)
    if (mask & bit)
      r.tracee().syscall_checked("membarrier (register)", SYS_membarrier,
                                 {static_cast<long>(bit), 0, 0});
}

// From ferry: the value the process had, also one it could not set itself (a root parent may
// have lowered it).
void set_oom_score_adj(pid_t pid, int value) {
  UniqueFd fd(::open(proc::path(pid, "oom_score_adj").c_str(), O_WRONLY | O_CLOEXEC));
  std::string text = std::to_string(value);
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    fail_errno(errno, "cannot set oom_score_adj to {}", value);
}

// A prctl(option, &value) asked of ctx; `set` gets the value when the call succeeded.
template <class T>
void ask_prctl(DumpContext& ctx, long option, void (*set)(image::TaskAttrs&, T)) {
  ctx.ask({SYS_prctl, {option}, 2, sizeof(T), [set](image::Image& img, long r, const char* out) {
             T v{};
             std::memcpy(&v, out, sizeof v);
             if (r == 0) set(*img.mutable_attrs(), v);
           }});
}

}  // namespace

void dump_own_task_attrs(DumpContext& ctx, image::Image& img) {
  pid_t pid = ctx.pid();
  proc::Stat st(pid);
  image::ProcessInfo* info = img.mutable_process();
  image::TaskAttrs* attrs = img.mutable_attrs();
  info->set_comm(st.comm());
  info->set_pgid(static_cast<int32_t>(st.field(5)));
  info->set_sid(static_cast<int32_t>(st.field(6)));
  info->set_group_leader(info->pgid() == pid);
  info->set_session_leader(info->sid() == pid);
  attrs->set_nice(static_cast<int32_t>(static_cast<int64_t>(st.field(19))));

  uint64_t head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, pid, &head, &len) == 0) {
    attrs->set_robust_list(head);
    attrs->set_robust_list_len(len);
  }
  // (A failing prctl leaves the attribute at its default, as a kernel without it would.)
  ask_prctl<uint64_t>(ctx, PR_GET_TID_ADDRESS,
                      [](image::TaskAttrs& a, uint64_t v) { a.set_clear_child_tid(v); });
  ask_prctl<int32_t>(ctx, PR_GET_PDEATHSIG,
                     [](image::TaskAttrs& a, int32_t v) { a.set_pdeath_signal(v); });
  ask_prctl<int32_t>(ctx, PR_GET_CHILD_SUBREAPER,
                     [](image::TaskAttrs& a, int32_t v) { a.set_child_subreaper(v != 0); });
}

void dump_inherited_task_attrs(DumpContext& ctx, image::TaskAttrs* attrs) {
  pid_t pid = ctx.pid();
  attrs->set_personality(
      static_cast<uint32_t>(proc::parse_u64(proc::read_file(proc::path(pid, "personality")), 16)));
  Tracee& t = ctx.tracee();
  long slack = t.syscall(SYS_prctl, {PR_GET_TIMERSLACK});
  if (slack > 0) attrs->set_timer_slack_ns(static_cast<uint64_t>(slack));
  long thp = t.syscall(SYS_prctl, {PR_GET_THP_DISABLE});
  if (thp > 0) attrs->set_thp_disable(static_cast<int32_t>(thp));

  if (auto uid = proc::try_read_file(proc::path(pid, "loginuid")))
    attrs->set_loginuid(static_cast<uint32_t>(proc::parse_u64(std::string(proc::trim(*uid)))));
  attrs->set_oom_score_adj(static_cast<int32_t>(
      proc::parse_i64(std::string(proc::trim(proc::read_file(proc::path(pid, "oom_score_adj")))))));
  // Per address space, asked from inside (there is no /proc file). Before Linux 6.3 the kernel
  // cannot list them: each private command is tried instead (it fails with EPERM unless
  // registered, and is otherwise only a barrier); its REGISTER_ command is the next bit up.
  long reg = t.syscall(SYS_membarrier, {kMembarrierGetRegistrations, 0, 0});
  if (reg == -EINVAL) {
    reg = 0;
    for (long use : {1l << 3, 1l << 5, 1l << 7})  // PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ
      if (t.syscall(SYS_membarrier, {use, 0, 0}) == 0) reg |= use << 1;
  }
  if (reg > 0) attrs->set_membarrier_registrations(static_cast<uint32_t>(reg));
}

void restore_task_attrs(Restorer& r, const image::TaskAttrs& attrs,
                        const image::ProcessInfo& info) {
  Tracee& t = r.tracee();
  r.reset_stage();
  t.syscall_checked("prctl(PR_SET_NAME)", SYS_prctl,
                    {PR_SET_NAME, static_cast<long>(r.stage_string(info.comm()))});
  // A session leader stays one; a group leader leads a new group in the restorer's session.
  if (info.session_leader())
    t.syscall_checked("setsid", SYS_setsid);
  else if (info.group_leader())
    t.syscall_checked("setpgid", SYS_setpgid, {0, 0});
  t.syscall_checked("setpriority", SYS_setpriority, {PRIO_PROCESS, 0, attrs.nice()});
  t.syscall_checked("personality", SYS_personality, {static_cast<long>(attrs.personality())});
  if (attrs.robust_list())
    t.syscall_checked(
        "set_robust_list", SYS_set_robust_list,
        {static_cast<long>(attrs.robust_list()), static_cast<long>(attrs.robust_list_len())});
  if (attrs.clear_child_tid())
    t.syscall(SYS_set_tid_address, {static_cast<long>(attrs.clear_child_tid())});
  if (attrs.child_subreaper())
    t.syscall_checked("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl, {PR_SET_CHILD_SUBREAPER, 1});
  if (attrs.timer_slack_ns())
    t.syscall(SYS_prctl, {PR_SET_TIMERSLACK, static_cast<long>(attrs.timer_slack_ns())});
  if (attrs.thp_disable())
    t.syscall_checked("prctl(PR_SET_THP_DISABLE)", SYS_prctl, {PR_SET_THP_DISABLE, 1, 0, 0, 0});
  if (attrs.has_loginuid()) restore_loginuid(r, attrs.loginuid());
  if (attrs.membarrier_registrations()) restore_membarrier(r, attrs.membarrier_registrations());
  set_oom_score_adj(t.pid(), attrs.oom_score_adj());
}

void restore_parent_death_signal(Restorer& r, const image::TaskAttrs& attrs) {
  r.tracee().syscall_checked("prctl(PR_SET_PDEATHSIG)", SYS_prctl,
                             {PR_SET_PDEATHSIG, attrs.pdeath_signal()});
}

}  // namespace ferry::cr
