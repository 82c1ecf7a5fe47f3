#include "cr/dump.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/dump_context.h"
#include "cr/image_paths.h"
#include "cr/pages.h"
#include "cr/preflight.h"
#include "cr/ptrace/tracee.h"
#include "cr/resources/cgroups.h"
#include "cr/resources/creds.h"
#include "cr/resources/files/fd_table.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/resources/fs.h"
#include "cr/resources/ghost_files.h"
#include "cr/resources/map_check.h"
#include "cr/resources/memory_map.h"
#include "cr/resources/mm_fields.h"
#include "cr/resources/registers.h"
#include "cr/resources/rlimits.h"
#include "cr/resources/rseq.h"
#include "cr/resources/shmem.h"
#include "cr/resources/signals.h"
#include "cr/resources/task_attrs.h"
#include "cr/resources/timers.h"
#include "image/image_files.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"
#include "version.h"

namespace ferry::cr {
namespace {

constexpr unsigned long long kUserCs64 = 0x33;

// The process `pid` as /proc shows it, read from `seen_as`: the process itself, or its fork copy,
// which has the same executable and arguments (the kernel copies both).
void describe_process(pid_t pid, pid_t seen_as, image::ProcessInfo* info) {
  info->set_pid(pid);
  info->set_exe_path(proc::read_link(proc::path(seen_as, "exe")));
  struct stat st;
  if (::stat(info->exe_path().c_str(), &st) != 0)
    fail_errno(errno, "cannot stat {}", info->exe_path());
  *info->mutable_exe() = identity_of(st);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  info->set_hostname(host);
  info->set_ferry_version(kFerryVersion);
  info->set_boot_id(boot_id());
  timeval tv;
  ::gettimeofday(&tv, nullptr);
  info->set_created_unix_ms(static_cast<uint64_t>(tv.tv_sec) * 1000 +
                            static_cast<uint64_t>(tv.tv_usec) / 1000);
  for (auto& arg :
       proc::split(proc::try_read_file(proc::path(seen_as, "cmdline")).value_or(""), '\0'))
    info->add_argv(arg);
}

// What only the process itself can tell, or what changes as soon as it runs on: its registers,
// signal mask and queue, timers, and the attributes a fork copy does not share. (Its files and
// memory map, described before, too: the positions move, and a copy lacks MADV_DONTFORK regions.)
// The calls these need inside the process are only asked here: a snapshot has them answered
// together with its fork (FrozenProcess::fork_copy()), the rest at once.
void describe_own_state(DumpContext& ctx, image::Image& img) {
  *img.mutable_registers() = dump_registers(ctx.tracee());
  dump_signal_queue(ctx, img.mutable_signals());
  dump_timers(ctx, img);
  dump_own_task_attrs(ctx, img);
}

// What a fork copy has exactly as the process had it at the fork, because the kernel copies it:
// the executable and arguments, the address space's fields, signal handlers, credentials,
// working directory, cgroups, limits, the inherited attributes, the rseq registration. Asked of
// ctx (the process `pid` itself, or its copy).
void describe_inherited_state(DumpContext& ctx, pid_t pid, image::Image& img) {
  describe_process(pid, ctx.pid(), img.mutable_process());
  *img.mutable_memory()->mutable_mm() = dump_mm_fields(ctx);
  dump_signal_actions(ctx, img.mutable_signals());
  *img.mutable_creds() = dump_creds(ctx);
  image::TaskAttrs* attrs = img.mutable_attrs();
  dump_fs(ctx, attrs);
  dump_cgroups(ctx.pid(), attrs);
  dump_rlimits(ctx, attrs);
  dump_inherited_task_attrs(ctx, attrs);
  *attrs->mutable_rseq() = dump_rseq(ctx.tracee());
}

}  // namespace

FrozenProcess freeze_and_describe(pid_t pid, const FreezeOptions& options) {
  std::vector<VmaInfo> vmas;
  check_supported(pid, options.ferry_tracks_writes, &vmas);
  // (The freeze counts from the interrupt: the wait for the stop is part of it.)
  Stopwatch freeze;
  auto tracee = std::make_unique<Tracee>(Tracee::seize(pid));
  Stopwatch phase = freeze;
  tracee->share_cpu();
  if (options.on_stopped) options.on_stopped();
  recheck_stopped(pid);
  if (tracee->stopped_regs().cs != kUserCs64)
    fail("cannot checkpoint process {}: it is not a 64-bit process", pid);
  tracee->settle_syscall();

  image::Image img;
  auto ctx = std::make_unique<DumpContext>(*tracee);
  ctx->preflight_vmas = std::move(vmas);
  // (Pre-copy: ferry's own write-protection is on the memory; the image must not record it.)
  ctx->ferry_tracks_writes = options.ferry_tracks_writes;
  auto done = [&](const char* what) {
    spdlog::debug("dump: {} took {:.2f} ms", what, phase.elapsed_ms());
    phase.restart();
  };
  done("stop");
  image::Memory* mem = img.mutable_memory();
  // The layout first: everything after it may inject syscalls that map scratch memory.
  dump_memory_map(*ctx, mem);
  for (auto& v : mem->vmas())
    if (v.kind() == image::Vma::VDSO) tracee->know_vdso(v.start());
  done("memory map");
  dump_files(*ctx, img.mutable_files(), mem);
  done("files");
  describe_own_state(*ctx, img);
  if (!options.inherited_from_copy) {
    ctx->answer_queries(img);
    describe_inherited_state(*ctx, pid, img);
  }
  // Nothing injected stays in the process during the long page phase.
  ctx->finish();
  tracee->undo_injection();
  if (!options.keep_cpu_shared) tracee->stop_sharing_cpu();
  done(options.inherited_from_copy ? "registers, signal queue, timers, own attributes"
                                   : "registers, signals, timers, credentials, attributes");
  return FrozenProcess(std::move(tracee), std::move(ctx), std::move(img), freeze);
}

image::Image describe_layout(pid_t pid) {
  std::vector<VmaInfo> vmas;
  check_supported(pid, false, &vmas);
  DumpContext ctx(pid);
  ctx.preflight_vmas = std::move(vmas);
  image::Image img;
  describe_process(pid, pid, img.mutable_process());
  *img.mutable_creds() = dump_ids(pid);
  dump_memory_map(ctx, img.mutable_memory());
  return img;
}

void FrozenProcess::dump_pages(image::PageSink& sink, const PageSelection& selection) {
  Stopwatch phase;
  ctx_->set_pages(&sink);
  ctx_->selection() = selection;
  image::Memory* mem = image_.mutable_memory();
  dump_private_pages(*ctx_, mem);
  dump_shmem_contents(*ctx_, mem);
  dump_ghost_contents(*ctx_, mem);
  ctx_->set_pages(nullptr);
  spdlog::debug("dump: pages took {:.2f} ms", phase.elapsed_ms());
  image::DumpStats& stats = *image_.mutable_stats();
  stats = ctx_->stats();
  stats.set_dump_us(freeze_.elapsed_us());
  stats.set_remote_syscalls(tracee_->remote_syscall_count());
}

std::unique_ptr<HeldCopy> FrozenProcess::fork_copy() {
  const uint64_t scratch = ctx_->scratch() - DumpContext::kArgsOffset;
  auto copy = std::make_unique<HeldCopy>(ctx_->answer_queries_and_fork(image_));
  copy->inherited_scratch = {scratch, DumpContext::kScratchSize};
  ctx_->finish();
  tracee_->undo_injection();
  return copy;
}

void FrozenProcess::describe_inherited() {
  ctx_->answer_queries(image_);
  describe_inherited_state(*ctx_, pid_, image_);
  ctx_->finish();
  tracee_->undo_injection();
}

void FrozenProcess::describe_inherited_from(const HeldCopy& copy) {
  Stopwatch took;
  Tracee t = Tracee::adopt_copy(copy.pid());
  try {
    if (copy.inherited_scratch.len)
      t.syscall_checked("munmap (the scratch memory the copy inherited)", SYS_munmap,
                        {static_cast<long>(copy.inherited_scratch.addr),
                         static_cast<long>(copy.inherited_scratch.len)});
    check_copy_has_the_recorded_map(copy.pid(), image_.memory());
    DumpContext ctx(t);
    describe_inherited_state(ctx, pid_, image_);
    ctx.finish();
  } catch (...) {
    t.forget();  // (its HeldCopy ends it)
    throw;
  }
  t.forget();
  spdlog::debug("dump: the copy {} described the rest in {:.2f} ms", copy.pid(), took.elapsed_ms());
}

void FrozenProcess::read_pages_from(const HeldCopy& copy) {
  ctx_->read_memory_of(copy.pid());
}

UniqueFd FrozenProcess::make_userfaultfd(int flags) {
  long fd = tracee_->syscall(SYS_userfaultfd, {flags});
  if (fd < 0) fail_errno(static_cast<int>(-fd), "userfaultfd in process {}", pid_);
  UniqueFd ours;
  try {
    ours = ctx_->steal_fd(static_cast<int>(fd));
  } catch (...) {
    tracee_->syscall(SYS_close, {fd});
    tracee_->undo_injection();
    throw;
  }
  tracee_->syscall(SYS_close, {fd});
  tracee_->undo_injection();
  return ours;
}

FrozenProcess freeze_and_dump(pid_t pid, image::PageSink& sink) {
  FrozenProcess f = freeze_and_describe(pid);
  f.dump_pages(sink);
  return f;
}

FrozenProcess::FrozenProcess(std::unique_ptr<Tracee> tracee, std::unique_ptr<DumpContext> ctx,
                             image::Image&& img, Stopwatch freeze)
    : tracee_(std::move(tracee)),
      ctx_(std::move(ctx)),
      image_(std::move(img)),
      freeze_(freeze),
      pid_(tracee_->pid()) {}

FrozenProcess::FrozenProcess(FrozenProcess&&) noexcept = default;
// The context (which may still hold descriptors of the process's objects) goes before the tracee.
FrozenProcess::~FrozenProcess() {
  ctx_.reset();
}

void FrozenProcess::resume() {
  tracee_->detach();
}
void FrozenProcess::destroy() {
  tracee_->kill();
}
void FrozenProcess::die_with_ferry() {
  tracee_->kill_on_tracer_exit();
}

}  // namespace ferry::cr
