#include "cr/resources/rlimits.h"

#include <errno.h>
#include <sys/resource.h>

#include <sys/syscall.h>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

void dump_rlimits(DumpContext& ctx, image::TaskAttrs* attrs) {
  // Read from here when allowed (root, or the same user): 16 calls fewer injected into a frozen
  // process. Otherwise asked inside it: prlimit() on another user's process needs
  // CAP_SYS_RESOURCE.
  bool from_outside = true;
  uint64_t scratch = 0;
  for (int res = 0; res < RLIMIT_NLIMITS; res++) {
    rlimit lim;
    if (from_outside &&
        ::prlimit(ctx.pid(), static_cast<__rlimit_resource>(res), nullptr, &lim) != 0) {
      if (errno != EPERM) fail_errno(errno, "cannot read resource limit {} of {}", res, ctx.pid());
      from_outside = false;
    }
    if (!from_outside) {
      if (!scratch) scratch = ctx.scratch();
      long rc =
          ctx.syscall_out(SYS_prlimit64, {0, res, 0, static_cast<long>(scratch)}, &lim, sizeof lim);
      if (rc < 0)
        fail_errno(static_cast<int>(-rc), "cannot read resource limit {} of {}", res, ctx.pid());
    }
    image::RLimit* r = attrs->add_rlimits();
    r->set_resource(res);
    r->set_cur(lim.rlim_cur);
    r->set_max(lim.rlim_max);
  }
}

namespace {

const char* rlimit_name(int res) {
  static const char* names[] = {"CPU",   "FSIZE",   "DATA",     "STACK",  "CORE",
                                "RSS",   "NPROC",   "NOFILE",   "MEMLOCK", "AS",
                                "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE",  "RTPRIO",
                                "RTTIME"};
  return res >= 0 && res < static_cast<int>(sizeof names / sizeof *names) ? names[res] : "?";
}

// Why a hard limit cannot go back up here: for open files the system's own ceiling
// (fs.nr_open) comes before any capability.
std::string why_capped(int res, uint64_t wanted) {
  if (res == RLIMIT_NOFILE) {
    auto nr_open = proc::try_read_file("/proc/sys/fs/nr_open");
    if (nr_open && wanted > proc::parse_u64(proc::trim(*nr_open)))
      return fmt::format("this system allows at most {} (fs.nr_open)",
                         std::string(proc::trim(*nr_open)));
  }
  return "raising a hard limit needs CAP_SYS_RESOURCE, which ferry does not have here";
}

}  // namespace

void restore_rlimits(Restorer& r, const image::TaskAttrs& attrs) {
  for (auto& l : attrs.rlimits()) {
    auto res = static_cast<__rlimit_resource>(l.resource());
    rlimit want{l.cur(), l.max()};
    if (::prlimit(r.pid(), res, &want, nullptr) == 0) continue;
    if (errno != EPERM) fail_errno(errno, "cannot set resource limit {}", l.resource());
    // The hard limit cannot go up without CAP_SYS_RESOURCE: keep the current one.
    rlimit have;
    ::prlimit(r.pid(), res, nullptr, &have);
    rlimit capped{std::min<rlim_t>(l.cur(), have.rlim_max), have.rlim_max};
    if (::prlimit(r.pid(), res, &capped, nullptr) != 0)
      fail_errno(errno, "cannot set resource limit {}", l.resource());
    r.notes.push_back(fmt::format("resource limit RLIMIT_{} kept at hard {} (the image had {}): {}",
                                  rlimit_name(l.resource()), have.rlim_max, l.max(),
                                  why_capped(l.resource(), l.max())));
  }
}

}  // namespace ferry::cr
