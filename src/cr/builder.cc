#include "cr/builder.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/resources/creds.h"
#include "cr/resources/files/fd_table.h"
#include "cr/resources/fs.h"
#include "cr/resources/ghost_files.h"
#include "cr/resources/memory_map.h"
#include "cr/resources/mm_fields.h"
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
#include "cr/verify.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/proc.h"
#include "util/stat_time.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;

// The helper's whole life before ferry takes it over: block every signal, die with ferry, wait.
// Only raw system calls: it runs right after clone3() in a copy of a possibly multi-threaded
// process. (Used when ferry-helper is not installed next to ferry.)
[[noreturn]] void helper_main() {
  uint64_t all = ~0ull;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, nullptr, 8);
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  for (;;) ::syscall(SYS_pause);
}

// clone3(args) whose child, sharing our memory and stack until it execs (CLONE_VM|CLONE_VFORK),
// immediately runs execve(path, argv, envp): no stack, no libc in the child.
long clone3_exec(clone_args* args, const char* path, char* const* argv, char* const* envp) {
  long ret;
  register const char* p __asm__("r12") = path;
  register char* const* a __asm__("r13") = argv;
  register char* const* e __asm__("r14") = envp;
  __asm__ volatile(
      "syscall\n\t"
      "test %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "mov $59, %%eax\n\t"  // execve
      "mov %%r12, %%rdi\n\t"
      "mov %%r13, %%rsi\n\t"
      "mov %%r14, %%rdx\n\t"
      "syscall\n\t"
      "mov $231, %%eax\n\t"  // exit_group(127): the exec failed
      "mov $127, %%edi\n\t"
      "syscall\n\t"
      "1:\n\t"
      : "=a"(ret)
      : "a"(SYS_clone3), "D"(args), "S"(sizeof(clone_args)), "r"(p), "r"(a), "r"(e)
      : "rcx", "r11", "rdx", "memory");
  return ret;
}

const std::string& helper_binary() {
  static const std::string path = [] {
    auto exe = proc::try_read_link("/proc/self/exe");
    if (!exe) return std::string();
    std::string p = exe->substr(0, exe->rfind('/')) + "/ferry-helper";
    return ::access(p.c_str(), X_OK) == 0 ? p : std::string();
  }();
  return path;
}

pid_t clone_helper(pid_t wanted) {
  clone_args args{};
  args.exit_signal = SIGCHLD;
  if (wanted > 0) {
    args.set_tid = reinterpret_cast<uint64_t>(&wanted);
    args.set_tid_size = 1;
  }
  // A fresh ferry-helper starts tiny: much cheaper than a copy of ferry (page tables, hundreds of
  // mappings and descriptors) that must then be taken apart.
  const std::string& helper = helper_binary();
  if (!helper.empty()) {
    args.flags = CLONE_VM | CLONE_VFORK;
    char* argv[] = {const_cast<char*>("ferry-helper"), nullptr};
    char* envp[] = {nullptr};
    long r = clone3_exec(&args, helper.c_str(), argv, envp);
    if (r < 0) {
      errno = static_cast<int>(-r);
      return -1;
    }
    return static_cast<pid_t>(r);
  }
  long r = ::syscall(SYS_clone3, &args, sizeof args);
  if (r == 0) helper_main();
  return static_cast<pid_t>(r);
}

// The PID is held by a process that has ended: a zombie its parent has not reaped yet, or one
// reaped since our attempt (its /proc entry is gone).
bool ended_or_gone(pid_t pid) {
  auto stat = proc::try_read_file(proc::path(pid, "stat"));
  if (!stat) return true;
  auto close = stat->rfind(')');
  return close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z';
}

// Starts the helper with the image's PID when that PID is free. Right after a checkpoint the
// killed original may still be a zombie that its parent has not reaped yet: give the parent a
// moment (up to 3 s).
pid_t spawn_helper(pid_t wanted, bool same_pid) {
  pid_t pid = clone_helper(wanted);
  int err = pid < 0 ? errno : 0;  // (saved at once: the /proc read below may change errno)
  for (int tries = 0; pid < 0 && err == EEXIST && tries < 600 && ended_or_gone(wanted); tries++) {
    if (tries) ::usleep(5000);
    pid = clone_helper(wanted);
    err = pid < 0 ? errno : 0;
  }
  if (pid > 0) return pid;
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
  int64_t mtime = mtime_ns(st);
  if (static_cast<uint64_t>(st.st_size) != p.exe().size() || mtime != p.exe().mtime_ns())
    fail("executable {} changed since the checkpoint (size or modification time differ)",
         p.exe_path());
}

bool aligned(uint64_t v) {
  return v % kPage == 0;
}

// Runs one step of the build: a system call that failed inside the new process is reported as
// the part of the process it was rebuilding, not as the call alone.
template <typename F>
void step(const char* what, F&& f) {
  try {
    f();
  } catch (const SyscallFailed& e) {
    fail("cannot restore {}: {}", what, e.what());
  }
}

}  // namespace

ProcessBuilder::ProcessBuilder(const image::Image& img, const BuildOptions& options)
    : img_(&img), options_(options) {
  check_executable(img.process());
  // (A migration's layout comes without registers: finish() checks then.)
  if (!img.registers().gpr().empty())
    check_cpu_compatible(img.registers(), local_xstate_size(), local_xcr0());
  for (auto& v : img.memory().vmas()) vmas_[v.start()] = &v;

  Stopwatch spawned;
  pid_ = spawn_helper(img.process().pid(), options.same_pid);
  try {
    tracee_ = std::make_unique<Tracee>(Tracee::seize(pid_));
    tracee_->share_cpu();  // for the many calls that lay out the address space
    spdlog::debug("build: helper {} made and held in {:.2f} ms", pid_, spawned.elapsed_ms());
    r_ = std::make_unique<Restorer>(*tracee_, *img_);
    r_->external_fds = options.external_fds;
    Tracee& t = *tracee_;
    const image::Memory& mem = img.memory();
    Stopwatch phase;
    std::string steps;
    auto timed = [&](const char* what) {
      steps += fmt::format(" {} {:.2f}", what, phase.elapsed_ms());
    };
    step("the address space", [&] {
      // The helper comes with descriptors and memory of its own: they go first.
      t.syscall_checked("close_range", SYS_close_range, {0, ~0u, 0});
      prepare_address_space(*r_, mem);
      timed("emptied");
      r_->place_scratch();
      restore_ghosts(*r_, mem);
      restore_memfds(*r_, mem);
      shared_anon_ = std::make_unique<SharedAnonBuilder>(*r_, mem);
      timed("objects");
      restore_memory_map(*r_, mem, *shared_anon_);
      timed("mapped");
      setup_userfaultfd();
    });
    tracee_->stop_sharing_cpu();  // (pages may be placed from any thread, at any length)
    spdlog::debug("build: address space laid out in {:.2f} ms ({} remote syscalls;{})",
                  phase.elapsed_ms(), t.remote_syscall_count(), steps);
  } catch (...) {
    // Never let a half-built process run.
    if (tracee_) tracee_->kill();
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, __WALL);
    throw;
  }
}

ProcessBuilder::~ProcessBuilder() {
  if (finished_) return;
  try {
    shared_anon_.reset();
    r_.reset();
    if (tracee_) tracee_->kill();
    ::waitpid(pid_, nullptr, __WALL | WNOHANG);
  } catch (const std::exception& e) {
    spdlog::warn("cannot end the unfinished process {}: {}", pid_, e.what());
  }
}

// userfaultfd lets ferry place whole pages into the new process: UFFDIO_COPY allocates each page
// and copies the data into it, with no zeroing first and no fault per page (a first-touch fault
// costs both). Anonymous 4 KiB regions only: UFFDIO_COPY installs small pages, so regions with
// huge-page advice are written by process_vm_writev (their faults allocate huge pages).
void ProcessBuilder::setup_userfaultfd() {
  long fd = tracee_->syscall(SYS_userfaultfd, {O_CLOEXEC | O_NONBLOCK});
  if (fd < 0) return;  // no userfaultfd: everything goes the writev way
  remote_uffd_ = static_cast<int>(fd);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd) return;
  uffd_.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), remote_uffd_, 0)));
  if (!uffd_) return;
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = options_.lazy ? options_.uffd_features : 0;
  if (::ioctl(uffd_.get(), UFFDIO_API, &api) != 0) {
    if (options_.lazy) fail_errno(errno, "userfaultfd features for lazy pages");
    uffd_.reset();
    return;
  }
  register_userfaultfd_regions();
}

void ProcessBuilder::register_userfaultfd_regions() {
  uffd_regions_.clear();
  for (auto& v : img_->memory().vmas()) {
    // Huge-page regions get huge pages from faults, not UFFDIO_COPY (4 KiB); lazily filled
    // memory has no choice (its pages arrive one by one).
    if (v.kind() != image::Vma::ANON_PRIVATE || ((v.vm_flags() & kVmHugePage) && !options_.lazy))
      continue;
    uffdio_register reg{};
    reg.range = {v.start(), v.end() - v.start()};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) == 0)
      uffd_regions_[v.start()] = v.end();
    else if (options_.lazy)
      fail_errno(errno, "cannot register memory at {:x} for lazy pages", v.start());
  }
}

UniqueFd ProcessBuilder::take_userfaultfd(AddressRanges* regions) {
  if (!options_.lazy || !uffd_) fail("internal: no userfaultfd to hand over");
  // The process must not keep a descriptor of its own for it.
  if (remote_uffd_ >= 0) tracee_->syscall(SYS_close, {remote_uffd_});
  remote_uffd_ = -1;
  regions->clear();
  for (auto& [start, end] : uffd_regions_) regions->push_back({start, end});
  uffd_regions_.clear();
  return std::move(uffd_);
}

void ProcessBuilder::drop_userfaultfd() {
  for (auto& [start, end] : uffd_regions_) {
    uffdio_range range{start, end - start};
    ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range);
  }
  uffd_regions_.clear();
  uffd_.reset();
  if (remote_uffd_ >= 0) tracee_->syscall(SYS_close, {remote_uffd_});
  remote_uffd_ = -1;
}

void ProcessBuilder::place_memory(uint64_t addr, const char* data, size_t len) {
  auto it = vmas_.upper_bound(addr);
  if (it == vmas_.begin()) fail("page data for {:x} outside every memory region", addr);
  const image::Vma& v = *(--it)->second;
  if (addr + len > v.end() ||
      (v.kind() != image::Vma::ANON_PRIVATE && v.kind() != image::Vma::FILE_PRIVATE))
    fail("page data for {:x} (+{} bytes) does not fit memory region {:x}-{:x}", addr, len,
         v.start(), v.end());
  if (uffd_regions_.count(v.start())) {
    uint64_t done = 0;
    while (done < len) {
      uffdio_copy c{};
      c.dst = addr + done;
      c.src = reinterpret_cast<uint64_t>(data + done);
      c.len = len - done;
      c.mode = UFFDIO_COPY_MODE_DONTWAKE;
      int rc = ::ioctl(uffd_.get(), UFFDIO_COPY, &c);
      int err = errno;
      if (c.copy > 0) done += static_cast<uint64_t>(c.copy);
      if (rc != 0 && err == EEXIST) {
        // The page is there already (pre-copy sends a page again when it changed): overwrite.
        write_through(v, addr + done, data + done, kPage);
        done += kPage;
        continue;
      }
      if (rc != 0 && err != EAGAIN) fail_errno(err, "cannot place pages at {:x}", c.dst);
    }
    return;
  }
  write_through(v, addr, data, len);
}

void ProcessBuilder::write_through(const image::Vma& v, uint64_t addr, const char* data,
                                   size_t len) {
  if (v.prot() & PROT_WRITE) {
    iovec local{const_cast<char*>(data), len}, remote{reinterpret_cast<void*>(addr), len};
    if (::process_vm_writev(pid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return;
  }
  // Read-only and PROT_NONE memory: /proc/PID/mem writes through (copy-on-write for private maps).
  if (!mem_fd_) {
    mem_fd_.reset(::open(proc::path(pid_, "mem").c_str(), O_RDWR | O_CLOEXEC));
    if (!mem_fd_) fail_errno(errno, "cannot open the memory of {}", pid_);
  }
  for (size_t done = 0; done < len;) {
    ssize_t n = ::pwrite(mem_fd_.get(), data + done, len - done, static_cast<off_t>(addr + done));
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot place pages at {:x}", addr + done);
    done += static_cast<size_t>(n);
  }
}

void ProcessBuilder::place(const image::PageTarget& t, const char* data, size_t len) {
  if (!aligned(t.addr) || !aligned(len))
    fail("page data at {:x} (+{}) is not page aligned", t.addr, len);
  switch (t.space) {
    case image::PageTarget::kMemory:
      place_memory(t.addr, data, len);
      break;
    case image::PageTarget::kShmem: {
      const image::ShmemObject& s = find_shmem(img_->memory(), t.id);
      if (t.addr + len > (s.size() + kPage - 1) / kPage * kPage)
        fail("page data beyond shared memory {}", t.id);
      if (s.is_memfd()) {
        if (::pwrite(r_->shmem_fds.at(t.id).get(), data, len, static_cast<off_t>(t.addr)) !=
            static_cast<ssize_t>(len))
          fail_errno(errno, "cannot fill memfd {}", s.memfd_name());
      } else {
        uint64_t base = shared_anon_->temp_address(t.id);
        iovec local{const_cast<char*>(data), len},
            remote{reinterpret_cast<void*>(base + t.addr), len};
        if (::process_vm_writev(pid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len))
          fail_errno(errno, "cannot fill shared memory {}", t.id);
      }
      break;
    }
    case image::PageTarget::kGhost: {
      auto it = r_->ghost_fds.find(t.id);
      if (it == r_->ghost_fds.end()) fail("page data for a missing unlinked file {}", t.id);
      if (::pwrite(it->second.get(), data, len, static_cast<off_t>(t.addr)) !=
          static_cast<ssize_t>(len))
        fail_errno(errno, "cannot fill an unlinked file");
      break;
    }
    default:
      fail("page data for an unknown kind of place");
  }
  bytes_placed_ += len;
}

void ProcessBuilder::relayout(const image::Image& final, const AddressRanges& retained,
                              const AddressRanges& discard) {
  Tracee& t = *tracee_;
  Stopwatch phase;
  // What goes: the old layout's objects, temporary mappings and scratch, then every mapping but
  // the retained memory.
  shared_anon_->finish();
  shared_anon_.reset();
  r_->close_temporary_fds(false);
  r_->remove_scratch();
  auto unmap = [&](uint64_t from, uint64_t to) {
    if (from < to)
      t.syscall_checked("munmap (old layout)", SYS_munmap,
                        {static_cast<long>(from), static_cast<long>(to - from)});
  };
  for (const image::Vma& v : img_->memory().vmas()) {
    if (v.kind() > image::Vma::FILE_SHARED) continue;
    uint64_t at = v.start();
    if (v.kind() == image::Vma::ANON_PRIVATE)
      for (auto& [ks, ke] : retained) {
        uint64_t s = std::max<uint64_t>(ks, v.start()), e = std::min<uint64_t>(ke, v.end());
        if (s >= e) continue;
        unmap(at, s);
        at = e;
      }
    unmap(at, v.end());
  }
  for (auto& [s, e] : discard)
    t.syscall_checked("madvise (dropped pages)", SYS_madvise,
                      {static_cast<long>(s), static_cast<long>(e - s), MADV_DONTNEED});
  // The new layout around what stayed.
  img_ = &final;
  vmas_.clear();
  for (auto& v : final.memory().vmas()) vmas_[v.start()] = &v;
  r_ = std::make_unique<Restorer>(t, final);
  r_->external_fds = options_.external_fds;
  r_->place_scratch();
  const image::Memory& mem = final.memory();
  restore_ghosts(*r_, mem);
  restore_memfds(*r_, mem);
  shared_anon_ = std::make_unique<SharedAnonBuilder>(*r_, mem);
  restore_memory_map(*r_, mem, *shared_anon_, &retained);
  if (uffd_) register_userfaultfd_regions();
  spdlog::debug("build: relayout took {:.2f} ms ({} remote syscalls so far)", phase.elapsed_ms(),
                t.remote_syscall_count());
}

void ProcessBuilder::adopt(const image::Image& final, const BuildOptions& options) {
  check_executable(final.process());
  img_ = &final;
  vmas_.clear();
  for (auto& v : final.memory().vmas()) vmas_[v.start()] = &v;
  options_.external_fds = options.external_fds;
  r_->external_fds = options.external_fds;
  // Descriptors the build left in the process were numbered for a layout without files: they
  // could sit where the files go. (The next one received opens above the files' numbers.)
  r_->close_temporary_fds(false);
  r_->set_image(final);
}

RestoredProcess ProcessBuilder::finish() {
  Tracee& t = *tracee_;
  Restorer& r = *r_;
  const image::Memory& mem = img_->memory();
  Stopwatch phase;
  auto done = [&](const char* what) {
    spdlog::debug("build: {} took {:.2f} ms ({} remote syscalls so far)", what, phase.elapsed_ms(),
                  t.remote_syscall_count());
    phase.restart();
  };
  try {
    check_cpu_compatible(img_->registers(), local_xstate_size(), local_xcr0());
    t.share_cpu();
    step("the memory", [&] {
      drop_userfaultfd();
      shared_anon_->finish();
      finish_memory_map(r, mem);
      finish_ghosts(r, mem);
      seal_memfds(r, mem);
      restore_mm_fields(r, mem.mm(), img_->process().exe_path());
    });
    done("memory");
    step("the resource limits", [&] { restore_rlimits(r, img_->attrs()); });
    step("the process attributes", [&] {
      restore_task_attrs(r, img_->attrs(), img_->process());
      restore_rseq(r, img_->attrs().rseq());
    });
    step("the open files", [&] { restore_files(r, img_->files()); });
    step("the timers", [&] { restore_timers(r, img_->timers(), img_->process().pid()); });
    step("the signal handlers", [&] {
      restore_signals(r, img_->signals());
      r.close_temporary_fds();
    });
    step("the credentials", [&] { restore_creds(r, img_->creds()); });
    // As the process's own user: it never gets a working directory it could not enter itself.
    step("the working directory", [&] { restore_fs(r, img_->attrs()); });
    step("the registers", [&] {
      restore_parent_death_signal(r, img_->attrs());
      r.remove_scratch();
      restore_signal_mask(r, img_->signals());
      restore_registers(r, img_->registers());
    });
    done("files, signals, timers, credentials, registers");
    // Nothing runs that differs from what was taken.
    VerifyOptions verify;
    verify.lazy = options_.lazy;
    for (auto& [num, fd] : r_->external_fds) verify.provided_fds.insert(num);
    verify_restored(pid_, *img_, verify);
    done("verified against the image");
    t.stop_sharing_cpu();
  } catch (...) {
    // The destructor kills the helper.
    throw;
  }
  finished_ = true;
  std::vector<std::string> notes = r.notes;
  shared_anon_.reset();
  r_.reset();
  return RestoredProcess(std::move(tracee_), img_->process().pid(), notes);
}

}  // namespace ferry::cr
