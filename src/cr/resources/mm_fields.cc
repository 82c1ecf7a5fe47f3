#include "cr/resources/mm_fields.h"

#include <fcntl.h>
#include <linux/prctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

image::MmFields dump_mm_fields(DumpContext& ctx) {
  proc::Stat st(ctx.pid());
  image::MmFields mm;
  mm.set_start_code(st.field(26));
  mm.set_end_code(st.field(27));
  mm.set_start_stack(st.field(28));
  mm.set_start_data(st.field(45));
  mm.set_end_data(st.field(46));
  mm.set_start_brk(st.field(47));
  mm.set_arg_start(st.field(48));
  mm.set_arg_end(st.field(49));
  mm.set_env_start(st.field(50));
  mm.set_env_end(st.field(51));
  // The current break is not in /proc; brk(0) asked inside the process returns it.
  mm.set_brk(static_cast<uint64_t>(ctx.tracee().syscall_checked("brk", SYS_brk, {0})));
  mm.set_auxv(proc::read_file(proc::path(ctx.pid(), "auxv")));
  return mm;
}

void restore_mm_fields(Restorer& r, const image::MmFields& mm, const std::string& exe_path) {
  // Opened by ferry itself (an execute-only program cannot be read by its user), only to name
  // the executable: the process never holds this descriptor.
  UniqueFd exe(::open(exe_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!exe) fail_errno(errno, "cannot open executable {}", exe_path);
  struct stat st;
  if (::fstat(exe.get(), &st) != 0 || !S_ISREG(st.st_mode))
    fail("executable {} is not a regular file any more", exe_path);
  int remote_exe = r.send_fd(exe.get());
  r.reset_stage();
  prctl_mm_map map{};
  map.start_code = mm.start_code();
  map.end_code = mm.end_code();
  map.start_data = mm.start_data();
  map.end_data = mm.end_data();
  map.start_brk = mm.start_brk();
  map.brk = mm.brk();
  map.start_stack = mm.start_stack();
  map.arg_start = mm.arg_start();
  map.arg_end = mm.arg_end();
  map.env_start = mm.env_start();
  map.env_end = mm.env_end();
  map.auxv = reinterpret_cast<__u64*>(r.stage(mm.auxv().data(), mm.auxv().size()));
  map.auxv_size = static_cast<__u32>(mm.auxv().size());
  map.exe_fd = static_cast<__u32>(remote_exe);
  uint64_t remote_map = r.stage(&map, sizeof map);
  r.tracee().syscall_checked(
      "prctl(PR_SET_MM_MAP)", SYS_prctl,
      {PR_SET_MM, PR_SET_MM_MAP, static_cast<long>(remote_map), sizeof map, 0});
  r.tracee().syscall(SYS_close, {remote_exe});
}

}  // namespace ferry::cr
