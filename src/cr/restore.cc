#include "cr/restore.h"

#include "cr/builder.h"

#include <cpuid.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/resources/cgroups.h"
#include "cr/resources/creds.h"
#include "cr/resources/files/fd_table.h"
#include "cr/resources/fs.h"
#include "cr/resources/ghost_files.h"
#include "cr/resources/memory_map.h"
#include "cr/resources/mm_fields.h"
#include "cr/pages.h"
#include "cr/ptrace/tracee.h"
#include "cr/resources/registers.h"
#include "cr/restorer.h"
#include "cr/resources/rlimits.h"
#include "cr/resources/rseq.h"
#include "cr/resources/shmem.h"
#include "cr/resources/signals.h"
#include "cr/resources/task_attrs.h"
#include "cr/resources/timers.h"
#include "cr/resources/vdso.h"
#include "image/image_files.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {

size_t local_xstate_size() {
  unsigned a, b, c, d;
  __cpuid_count(0xd, 0, a, b, c, d);
  return b;
}

uint64_t local_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

RestoredProcess::RestoredProcess(std::unique_ptr<Tracee> tracee, pid_t original_pid,
                                 std::vector<std::string> notes)
    : tracee_(std::move(tracee)),
      pid_(tracee_->pid()),
      original_pid_(original_pid),
      notes_(std::move(notes)) {}

RestoredProcess::RestoredProcess(RestoredProcess&& o) noexcept = default;

RestoredProcess::~RestoredProcess() {
  if (!tracee_) return;
  try {
    kill();
  } catch (const std::exception& e) {
    spdlog::warn("cannot end the unreleased process {}: {}", pid_, e.what());
  }
}

uint64_t RestoredProcess::remote_syscalls() const {
  return tracee_ ? tracee_->remote_syscall_count() : 0;
}

void RestoredProcess::release() {
  tracee_->release();
  tracee_.reset();
}

void RestoredProcess::kill() {
  if (!tracee_) return;
  tracee_->kill();
  ::waitpid(pid_, nullptr, __WALL | WNOHANG);
  tracee_.reset();
}

RestoredProcess build_process(const image::LoadedImage& img, const BuildOptions& options) {
  Stopwatch phase;
  ProcessBuilder b(img.image, options);
  // Each block of pages.img is verified in memory of ours, then placed from there: nothing
  // unverified reaches the process, and a bad block ends the build before anything runs.
  feed_image_pages(img, [&](const image::PageTarget& t, const char* data, size_t len) {
    b.place(t, data, len);
  });
  spdlog::debug("restore: pages verified and placed in {:.2f} ms", phase.elapsed_ms());
  return b.finish();
}

RestoreResult restore(const RestoreOptions& options) {
  Stopwatch total;
  image::LoadedImage img = image::load_image(options.images_dir, image::host_image_key());
  spdlog::debug("restore: image loaded in {:.2f} ms", total.elapsed_ms());
  if (!options.stay_in_restorers_cgroups) {
    // Before anything is built: a missing group changes nothing.
    const auto& lines = img.image.attrs().cgroups();
    std::string why = missing_cgroups({lines.begin(), lines.end()});
    if (!why.empty())
      fail("cannot restore into the process's own control groups: {} (--cgroups restorer keeps "
           "it in ferry's)",
           why);
  }
  BuildOptions build_options;
  build_options.same_pid = options.same_pid;
  RestoredProcess p = build_process(img, build_options);
  RestoreResult res;
  res.pid = p.pid();
  res.original_pid = p.original_pid();
  res.remote_syscalls = p.remote_syscalls();
  res.notes = p.notes();
  // Back into its own control groups (not the restorer's), before it runs.
  if (options.stay_in_restorers_cgroups)
    res.notes.push_back("it stays in the restorer's control groups (--cgroups restorer)");
  else
    enter_cgroups(p.pid(), img.image.attrs());
  p.release();
  res.restore_us = total.elapsed_us();
  return res;
}

}  // namespace ferry::cr
