#include "cr/resources/signals.h"

#include <signal.h>
#include <sys/syscall.h>

#include <cstring>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

// The kernel's struct sigaction on x86_64 (not glibc's).
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

struct KernelStack {
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};

}  // namespace

image::Signals dump_signals(DumpContext& ctx) {
  image::Signals out;
  dump_signal_actions(ctx, &out);
  dump_signal_queue(ctx, &out);
  return out;
}

void dump_signal_queue(DumpContext& ctx, image::Signals* out) {
  out->set_blocked(ctx.tracee().stopped_sigmask());
  for (bool shared : {false, true})
    for (const siginfo_t& si : ctx.tracee().pending_signals(shared)) {
      image::PendingSignal* p = shared ? out->add_pending_shared() : out->add_pending_private();
      p->set_siginfo(std::string(reinterpret_cast<const char*>(&si), sizeof si));
    }
}

void dump_signal_actions(DumpContext& ctx, image::Signals* out) {
  auto status = proc::read_keyed(proc::path(ctx.pid(), "status"));
  // Only signals that are caught or ignored can have a non-default action.
  uint64_t interesting =
      proc::parse_u64(status.at("SigCgt"), 16) | proc::parse_u64(status.at("SigIgn"), 16);
  uint64_t scratch = ctx.scratch();
  for (int sig = 1; sig <= 64; sig++) {
    if (!(interesting >> (sig - 1) & 1) || sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction act{};
    long rc = ctx.syscall_out(SYS_rt_sigaction, {sig, 0, static_cast<long>(scratch), 8}, &act,
                              sizeof act);
    if (rc < 0) fail_errno(static_cast<int>(-rc), "cannot read the action of signal {}", sig);
    image::SigAction* a = out->add_actions();
    a->set_signo(sig);
    a->set_handler(act.handler);
    a->set_flags(act.flags);
    a->set_restorer(act.restorer);
    a->set_mask(act.mask);
  }
  KernelStack ss{};
  long rc = ctx.syscall_out(SYS_sigaltstack, {0, static_cast<long>(scratch)}, &ss, sizeof ss);
  if (rc < 0) fail_errno(static_cast<int>(-rc), "cannot read the alternate signal stack");
  out->mutable_altstack()->set_sp(ss.sp);
  out->mutable_altstack()->set_flags(ss.flags);
  out->mutable_altstack()->set_size(ss.size);
}

void restore_signals(Restorer& r, const image::Signals& s) {
  Tracee& t = r.tracee();
  // The helper starts with what it inherited: signals its starter ignored are ignored (ferryd
  // ignores SIGPIPE), and a helper cloned without exec also keeps its starter's handlers (ferry
  // notes SIGIO while it holds a lease on pages.img). Those the image does not set go back to
  // the default.
  auto status = proc::read_keyed(proc::path(r.pid(), "status"));
  uint64_t inherited =
      proc::parse_u64(status.at("SigIgn"), 16) | proc::parse_u64(status.at("SigCgt"), 16);
  for (auto& a : s.actions()) inherited &= ~(1ull << (a.signo() - 1));
  for (int sig = 1; sig <= 64; sig++) {
    if (!(inherited >> (sig - 1) & 1)) continue;
    r.reset_stage();
    KernelSigaction dfl{reinterpret_cast<uint64_t>(SIG_DFL), 0, 0, 0};
    uint64_t p = r.stage(&dfl, sizeof dfl);
    long rc = t.syscall(SYS_rt_sigaction, {sig, static_cast<long>(p), 0, 8});
    if (rc < 0) fail_errno(static_cast<int>(-rc), "cannot reset the action of signal {}", sig);
  }
  for (auto& a : s.actions()) {
    r.reset_stage();
    KernelSigaction act{a.handler(), a.flags(), a.restorer(), a.mask()};
    uint64_t p = r.stage(&act, sizeof act);
    long rc = t.syscall(SYS_rt_sigaction, {a.signo(), static_cast<long>(p), 0, 8});
    if (rc < 0) fail_errno(static_cast<int>(-rc), "cannot set the action of signal {}", a.signo());
  }
  const image::AltStack& as = s.altstack();
  if (!(as.flags() & SS_DISABLE)) {
    r.reset_stage();
    KernelStack ss{as.sp(), as.flags() & ~SS_ONSTACK, 0, as.size()};
    uint64_t p = r.stage(&ss, sizeof ss);
    // sigaltstack() refuses a change while "on" the stack; the helper's stack pointer is ours.
    t.set_syscall_sp(0);
    t.syscall_checked("sigaltstack", SYS_sigaltstack, {static_cast<long>(p), 0});
  }
  // Pending signals, in queue order. Everything is blocked in the helper, so they stay queued.
  for (bool shared : {false, true}) {
    for (auto& p : shared ? s.pending_shared() : s.pending_private()) {
      siginfo_t si;
      std::memcpy(&si, p.siginfo().data(), sizeof si);
      r.reset_stage();
      uint64_t info = r.stage(&si, sizeof si);
      long rc =
          shared ? t.syscall(SYS_rt_sigqueueinfo, {r.pid(), si.si_signo, static_cast<long>(info)})
                 : t.syscall(SYS_rt_tgsigqueueinfo,
                             {r.pid(), r.pid(), si.si_signo, static_cast<long>(info)});
      if (rc < 0) fail_errno(static_cast<int>(-rc), "cannot queue pending signal {}", si.si_signo);
    }
  }
}

void restore_signal_mask(Restorer& r, const image::Signals& s) {
  r.tracee().set_sigmask(s.blocked());
}

}  // namespace ferry::cr
