#include "cli/image_summary.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/user.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "cr/ptrace/tracee.h"
#include "util/printable.h"

namespace ferry::cli {
namespace {

// printf's %s of an escaped string from the image.
#define P(s) printable(s).c_str()

std::string prot_string(uint32_t prot, bool shared) {
  std::string s = "---p";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  if (shared) s[3] = 's';
  return s;
}

const char* kind_name(image::Vma::Kind k) {
  switch (k) {
    case image::Vma::ANON_PRIVATE:
      return "anon";
    case image::Vma::ANON_SHARED:
      return "shmem";
    case image::Vma::FILE_PRIVATE:
      return "file";
    case image::Vma::FILE_SHARED:
      return "file-shared";
    case image::Vma::VDSO:
      return "vdso";
    case image::Vma::VVAR:
    case image::Vma::VVAR_VCLOCK:
      return "vvar";
    case image::Vma::VSYSCALL:
      return "vsyscall";
    default:
      return "?";
  }
}

std::string describe_pipe(const image::OpenFile& f, const image::FileTable& ft) {
  size_t queued = 0;
  bool external = false;
  for (auto& p : ft.pipes())
    if (p.id() == f.pipe().pipe_id()) {
      queued = p.queued().size();
      external = p.external();
    }
  return fmt::format("{} {} end ({})",
                     f.pipe().is_fifo() ? "FIFO " + printable(f.pipe().fifo_path()) : "pipe",
                     (f.flags() & 3) == 1 ? "write" : "read",
                     external ? "peer outside" : fmt::format("{} bytes queued", queued));
}

std::string describe_file(const image::OpenFile& f, const image::FileTable& ft) {
  const char* acc = (f.flags() & 3) == 0 ? "r" : (f.flags() & 3) == 1 ? "w" : "rw";
  switch (f.kind_case()) {
    case image::OpenFile::kRegular:
      return fmt::format("{}{} ({}, pos {})", printable(f.regular().path()),
                         f.regular().ghost_id() ? " (unlinked, content saved)" : "", acc, f.pos());
    case image::OpenFile::kDirectory:
      return fmt::format("{} (directory)", printable(f.directory().path()));
    case image::OpenFile::kChardev:
      return fmt::format("{} (device {}:{}, {})", printable(f.chardev().path()),
                         f.chardev().rdev_major(), f.chardev().rdev_minor(), acc);
    case image::OpenFile::kTerminal:
      return fmt::format("terminal {} ({})", printable(f.terminal().path()), acc);
    case image::OpenFile::kPipe:
      return describe_pipe(f, ft);
    case image::OpenFile::kEventfd:
      return fmt::format("eventfd (count {})", f.eventfd().count());
    case image::OpenFile::kTimerfd:
      return fmt::format("timerfd (clock {}, {} ms left)", f.timerfd().clock_id(),
                         f.timerfd().value_ns() / 1000000);
    case image::OpenFile::kSignalfd:
      return fmt::format("signalfd (mask {:#x})", f.signalfd().mask());
    case image::OpenFile::kEpoll:
      return fmt::format("epoll ({} watched fds)", f.epoll().targets_size());
    case image::OpenFile::kMemfd:
      return "memfd";
    case image::OpenFile::kProvided:
      return "ferry's " + printable(f.provided().what()) + " descriptor";
    default:
      return "?";
  }
}

void print_process(const image::LoadedImage& li) {
  const image::Image& img = li.image;
  const auto& p = img.process();
  std::time_t when = static_cast<std::time_t>(p.created_unix_ms() / 1000);
  char when_s[64];
  std::strftime(when_s, sizeof when_s, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&when));
  std::printf("image       %s (id %s, format %u, ferry %s)\n", P(li.dir),
              image::hex(img.image_id()).c_str(), img.format_version(), P(p.ferry_version()));
  if (li.untrusted_why.empty())
    std::printf("trust       signed with this host's image key\n");
  else
    std::printf("trust       NOT TRUSTED: %s\n", P(li.untrusted_why));
  std::printf("process     pid %d \"%s\" %s, taken on %s at %s\n", p.pid(), P(p.comm()),
              P(p.exe_path()), P(p.hostname()), when_s);
  std::string argv;
  for (auto& a : p.argv()) argv += (argv.empty() ? "" : " ") + printable(a);
  std::printf("            argv: %s\n", argv.c_str());
  std::printf("            pgid %d sid %d%s%s, cwd %s\n", p.pgid(), p.sid(),
              p.session_leader() ? " (session leader)" : "",
              p.group_leader() ? " (group leader)" : "", P(img.attrs().cwd()));
  const auto& c = img.creds();
  std::printf(
      "credentials uid %u/%u/%u/%u gid %u/%u/%u/%u, %d groups, caps eff %#llx prm %#llx%s\n",
      c.uids(0), c.uids(1), c.uids(2), c.uids(3), c.gids(0), c.gids(1), c.gids(2), c.gids(3),
      c.groups_size(), static_cast<unsigned long long>(c.cap_effective()),
      static_cast<unsigned long long>(c.cap_permitted()), c.no_new_privs() ? ", no_new_privs" : "");
  user_regs_struct r;
  std::memcpy(&r, img.registers().gpr().data(), sizeof r);
  std::string resumes =
      img.registers().restart().kind()
          ? fmt::format(", resumes {}", cr::syscall_name(img.registers().restart().syscall_nr()))
          : "";
  std::printf("registers   rip %#llx rsp %#llx fs_base %#llx, xstate %zu bytes (xcr0 %#llx)%s\n",
              r.rip, r.rsp, r.fs_base, img.registers().xstate().size(),
              static_cast<unsigned long long>(img.registers().xcr0()), resumes.c_str());
}

void print_memory(const image::Memory& m) {
  uint64_t mapped = 0, pages = 0;
  for (auto& v : m.vmas()) mapped += v.end() - v.start();
  for (auto& run : m.pages()) pages += run.npages();
  std::printf("memory      %d regions, %.1f MiB mapped, %llu private pages in the image; brk %#llx\n",
              m.vmas_size(), mapped / 1048576.0, static_cast<unsigned long long>(pages),
              static_cast<unsigned long long>(m.mm().brk()));
  int ri = 0;
  for (auto& v : m.vmas()) {
    uint64_t in = 0;
    for (; ri < m.pages_size() && m.pages(ri).addr() < v.end(); ri++)
      if (m.pages(ri).addr() >= v.start()) in += m.pages(ri).npages();
    bool shared = v.kind() == image::Vma::ANON_SHARED || v.kind() == image::Vma::FILE_SHARED;
    std::printf("  %012llx-%012llx %s %-11s %8llu pages  %s\n",
                static_cast<unsigned long long>(v.start()),
                static_cast<unsigned long long>(v.end()), prot_string(v.prot(), shared).c_str(),
                kind_name(v.kind()), static_cast<unsigned long long>(in), P(v.name()));
  }
  for (auto& s : m.shmem()) {
    uint64_t n = 0;
    for (auto& run : s.pages()) n += run.npages();
    std::string memfd = s.is_memfd() ? " (memfd " + printable(s.memfd_name()) + ")" : "";
    std::printf("  shared memory %llu: %llu bytes%s, %llu pages in the image\n",
                static_cast<unsigned long long>(s.id()), static_cast<unsigned long long>(s.size()),
                memfd.c_str(), static_cast<unsigned long long>(n));
  }
  for (auto& g : m.ghosts())
    std::printf("  unlinked file %s: %llu bytes saved\n", P(g.path()),
                static_cast<unsigned long long>(g.size()));
}

void print_files_and_signals(const image::Image& img) {
  std::printf("files       %d descriptors\n", img.files().fds_size());
  for (auto& fd : img.files().fds())
    for (auto& f : img.files().files())
      if (f.id() == fd.file_id())
        std::printf("  fd %-3d %s%s\n", fd.num(), describe_file(f, img.files()).c_str(),
                    fd.cloexec() ? " [cloexec]" : "");
  const auto& s = img.signals();
  std::printf("signals     %d handlers, blocked %#llx, %d+%d pending\n", s.actions_size(),
              static_cast<unsigned long long>(s.blocked()), s.pending_private_size(),
              s.pending_shared_size());
  for (auto& a : s.actions())
    std::printf("  %-10s handler %#llx flags %#llx mask %#llx\n",
                cr::signal_name(a.signo()).c_str(), static_cast<unsigned long long>(a.handler()),
                static_cast<unsigned long long>(a.flags()),
                static_cast<unsigned long long>(a.mask()));
  std::printf("timers      %d interval, %d POSIX\n", img.timers().itimers_size(),
              img.timers().posix_size());
  std::printf("pages.img   %.1f MiB\n", img.pages_file().size() / 1048576.0);
}

#undef P

}  // namespace

void print_image_summary(const image::LoadedImage& li) {
  print_process(li);
  print_memory(li.image.memory());
  print_files_and_signals(li.image);
}

}  // namespace ferry::cli
