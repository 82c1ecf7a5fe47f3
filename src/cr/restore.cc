#include "cr/restore.h"

#include <cpuid.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "cr/creds.h"
#include "cr/files/fd_table.h"
#include "cr/fs.h"
#include "cr/ghost_files.h"
#include "cr/memory_map.h"
#include "cr/mm_fields.h"
#include "cr/pages.h"
#include "cr/ptrace/tracee.h"
#include "cr/registers.h"
#include "cr/restorer.h"
#include "cr/rlimits.h"
#include "cr/rseq.h"
#include "cr/shmem.h"
#include "cr/signals.h"
#include "cr/task_attrs.h"
#include "cr/timers.h"
#include "cr/vdso.h"
#include "image/image_files.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

// The helper's whole life before ferry takes it over: block every signal, die with ferry, wait.
// Only raw system calls: it runs right after clone3() in a copy of a possibly multi-threaded
// process.
[[noreturn]] void helper_main() {
  uint64_t all = ~0ull;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, 8);
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  for (;;) ::syscall(SYS_pause);
}

pid_t clone_helper(pid_t wanted) {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  if (wanted > 0) {
    args.set_tid = reinterpret_cast<uint64_t>(&wanted);
    args.set_tid_size = 1;
  }
  long r = ::syscall(SYS_clone3, &args, sizeof args);
  if (r == 0) helper_main();
  return static_cast<pid_t>(r);
}

bool is_zombie(pid_t pid) {
  auto stat = proc::try_read_file(proc::path(pid, "stat"));
  if (!stat) return false;
  auto close = stat->rfind(')');
  return close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z';
}

// Starts the helper with the image's PID when that PID is free. Right after a checkpoint the
// killed original may still be a zombie that its parent has not reaped yet: give the parent a
// moment (up to 3 s).
pid_t spawn_helper(pid_t wanted, bool same_pid) {
  pid_t pid = clone_helper(wanted);
  for (int tries = 0; pid < 0 && errno == EEXIST && tries < 600 && is_zombie(wanted); tries++) {
    ::usleep(5000);
    pid = clone_helper(wanted);
  }
  if (pid > 0) return pid;
  int err = errno;
  if (err == EEXIST) {
    if (same_pid) fail("PID {} is in use, and --same-pid was given", wanted);
    pid = clone_helper(0);
    if (pid > 0) return pid;
    err = errno;
  }
  fail_errno(err, "cannot create the process to restore into");
}

void check_executable(const image::ProcessInfo& p) {
  struct stat st;
  if (::stat(p.exe_path().c_str(), &st) != 0)
    fail_errno(errno, "executable {} is missing", p.exe_path());
  int64_t mtime = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
  if (static_cast<uint64_t>(st.st_size) != p.exe().size() || mtime != p.exe().mtime_ns())
    fail("executable {} changed since the checkpoint (size or modification time differ)",
         p.exe_path());
}

// Builds the process inside the held helper, resource by resource.
void build(Restorer& r, const image::Image& img, std::atomic<int>& verify_state,
           std::string& verify_error) {
  Tracee& t = r.tracee();
  const image::Memory& mem = img.memory();
  Stopwatch phase;
  auto done = [&](const char* what) {
    spdlog::debug("restore: {} took {:.2f} ms ({} remote syscalls so far)", what,
                  phase.elapsed_ms(), t.remote_syscall_count());
    phase.restart();
  };
  // The helper is a copy of ferry: drop its descriptors and memory first.
  t.syscall_checked("close_range", SYS_close_range, {0, ~0u, 0});
  prepare_address_space(r, mem);
  r.place_scratch();
  done("address space");

  restore_ghosts(r, mem);
  restore_memfds(r, mem);
  restore_memory_map(r, mem);
  done("memory map");
  restore_private_pages(r, mem);
  done("pages");
  finish_memory_map(r, mem);
  seal_memfds(r, mem);
  restore_mm_fields(r, mem.mm(), img.process().exe_path());
  done("protections, mm fields");

  restore_rlimits(r, img.attrs());
  restore_fs(r, img.attrs());
  restore_task_attrs(r, img.attrs(), img.process());
  restore_rseq(r, img.attrs().rseq());
  restore_files(r, img.files());
  restore_timers(r, img.timers(), img.process().pid());
  restore_signals(r, img.signals());
  r.close_temporary_fds();
  restore_creds(r, img.creds());
  restore_parent_death_signal(r, img.attrs());
  r.remove_scratch();
  done("files, signals, timers, credentials");

  // Nothing of the image may run before its pages are known to be intact.
  while (verify_state.load() == 0) std::this_thread::yield();
  done("waiting for page checksums");
  if (verify_state.load() < 0) fail("{}", verify_error);

  restore_signal_mask(r, img.signals());
  restore_registers(r, img.registers());
}

}  // namespace

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
    : tracee_(std::move(tracee)), pid_(tracee_->pid()), original_pid_(original_pid), notes_(std::move(notes)) {}

RestoredProcess::RestoredProcess(RestoredProcess&& o) noexcept = default;

RestoredProcess::~RestoredProcess() {
  if (!tracee_) return;
  try {
    kill();
  } catch (const std::exception& e) {
    spdlog::warn("cannot end the unreleased process {}: {}", pid_, e.what());
  }
}

uint64_t RestoredProcess::remote_syscalls() const { return tracee_ ? tracee_->remote_syscall_count() : 0; }

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
  const image::Image& image = img.image;
  check_executable(image.process());
  check_cpu_compatible(image.registers(), local_xstate_size(), local_xcr0());

  // Page checksums are verified on the other core while the process is being built.
  std::atomic<int> verify_state{options.verify_pages ? 0 : 1};
  std::string verify_error;
  std::thread verifier;
  if (options.verify_pages)
    verifier = std::thread([&] {
      try {
        image::verify_pages(img);
        verify_state = 1;
      } catch (const std::exception& e) {
        verify_error = e.what();
        verify_state = -1;
      }
    });
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{verifier};

  pid_t original = image.process().pid();
  pid_t pid = spawn_helper(original, options.same_pid);
  std::unique_ptr<Tracee> tracee;
  try {
    tracee = std::make_unique<Tracee>(Tracee::seize(pid));
    Restorer r(*tracee, img);
    r.external_fds = options.external_fds;
    build(r, image, verify_state, verify_error);
    return RestoredProcess(std::move(tracee), original, r.notes);
  } catch (...) {
    // Never let a half-built process run.
    if (tracee) tracee->kill();
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, __WALL);
    throw;
  }
}

RestoreResult restore(const RestoreOptions& options) {
  Stopwatch total;
  image::LoadedImage img = image::load_image(options.images_dir);
  spdlog::debug("restore: image loaded in {:.2f} ms", total.elapsed_ms());
  BuildOptions build_options;
  build_options.same_pid = options.same_pid;
  build_options.verify_pages = options.verify_pages;
  RestoredProcess p = build_process(img, build_options);
  RestoreResult res;
  res.pid = p.pid();
  res.original_pid = p.original_pid();
  res.remote_syscalls = p.remote_syscalls();
  res.notes = p.notes();
  p.release();
  res.restore_us = total.elapsed_us();
  return res;
}

}  // namespace ferry::cr
