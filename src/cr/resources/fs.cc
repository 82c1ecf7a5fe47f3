#include "cr/resources/fs.h"

#include <sys/syscall.h>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

void dump_fs(DumpContext& ctx, image::TaskAttrs* attrs) {
  std::string root = proc::read_link(proc::path(ctx.pid(), "root"));
  if (root != "/") fail("cannot checkpoint process {}: it runs in a chroot ({})", ctx.pid(), root);
  attrs->set_root(root);
  std::string cwd = proc::read_link(proc::path(ctx.pid(), "cwd"));
  if (cwd.size() > 10 && cwd.compare(cwd.size() - 10, 10, " (deleted)") == 0)
    fail("cannot checkpoint process {}: its working directory {} was removed", ctx.pid(), cwd);
  attrs->set_cwd(cwd);
  auto st = proc::read_keyed(proc::path(ctx.pid(), "status"));
  attrs->set_umask(static_cast<uint32_t>(proc::parse_u64(st.at("Umask"), 8)));
}

void restore_fs(Restorer& r, const image::TaskAttrs& attrs) {
  r.reset_stage();
  long rc = r.tracee().syscall(SYS_chdir, {static_cast<long>(r.stage_string(attrs.cwd()))});
  if (rc < 0)
    fail_errno(static_cast<int>(-rc), "cannot enter the working directory {}", attrs.cwd());
  r.tracee().syscall(SYS_umask, {static_cast<long>(attrs.umask())});
}

}  // namespace ferry::cr
