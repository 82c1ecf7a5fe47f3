#include "cr/resources/files/fd_table.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/resources/files/sockets.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

bool same_description(pid_t pid, int a, int b) {
  return ::syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0;
}

}  // namespace

std::string unsupported_fd(pid_t pid, int num, const std::string& link, const std::string* fdinfo) {
  if (link.rfind("socket:", 0) == 0 && !is_provided_socket(link))
    if (std::string why = unsupported_socket(pid, num); !why.empty()) return why;
  if (link == "/dev/ptmx" || link.rfind("/dev/pts/", 0) == 0)
    if (std::string why = unsupported_pty(pid, num, link); !why.empty()) return why;
  if (std::string why = unsupported_namespace_fd(pid, num, link); !why.empty()) return why;
  if (link.rfind("/proc/", 0) == 0)
    return fmt::format("fd {} is the procfs file {}; what it shows belongs to a process, and "
                       "ferry cannot reopen it for another one",
                       num, link);
  std::optional<std::string> read;
  if (!fdinfo) read = proc::try_read_file(proc::path(pid, fmt::format("fdinfo/{}", num)));
  bool async = false;
  for (auto& line : proc::split(fdinfo ? *fdinfo : read.value_or(""), '\n')) {
    if (line.rfind("flags:", 0) == 0)
      async = proc::parse_u64(std::string(proc::trim(line.substr(6))), 8) & O_ASYNC;
    if (line.rfind("lock:", 0) == 0 &&
        (line.find(" LEASE ") != std::string::npos || line.find(" DELEG ") != std::string::npos))
      return fmt::format("fd {} holds a lease on {}; leases are not supported (ferry cannot take "
                         "one again for the process)",
                         num, link);
  }
  // (A lease sets it too: that is said above.) The signal (F_SETSIG) and its owner (F_SETOWN)
  // are not in /proc: the restore could set the flag but not say whom to signal how.
  if (async)
    return fmt::format(
        "fd {} ({}) is set for signal-driven I/O (O_ASYNC), which ferry cannot "
        "set up again",
        num, link);
  if (link.rfind("anon_inode:", 0) == 0) {
    static const char* ok[] = {"anon_inode:[eventfd]", "anon_inode:[timerfd]",
                               "anon_inode:[signalfd]", "anon_inode:[eventpoll]"};
    if (link == "anon_inode:[eventpoll]") return unsupported_epoll(pid, num);
    for (auto* k : ok)
      if (link == k) return "";
    std::string what = link.substr(11);
    return fmt::format("fd {} is {}, which ferry cannot capture", num,
                       what == "[io_uring]"      ? "an io_uring instance"
                       : what == "inotify"       ? "an inotify instance"
                       : what == "[userfaultfd]" ? "a userfaultfd"
                       : what == "[pidfd]"       ? "a pidfd"
                                                 : what);
  }
  return "";
}

void dump_files(DumpContext& ctx, image::FileTable* ft, image::Memory* m) {
  pid_t pid = ctx.pid();
  std::vector<int> nums;
  for (auto& n : proc::list_dir(proc::path(pid, "fd")))
    nums.push_back(static_cast<int>(proc::parse_u64(n)));
  std::sort(nums.begin(), nums.end());

  std::vector<std::unique_ptr<FdProbe>> probes;
  std::vector<std::pair<FdProbe*, image::OpenFile*>> descriptions;
  for (int num : nums) {
    auto p = std::make_unique<FdProbe>();
    p->num = num;
    p->link = proc::read_link(proc::path(pid, fmt::format("fd/{}", num)));
    // (Read once: in a snapshot this runs while the task is stopped.)
    std::string info = proc::read_file(proc::path(pid, fmt::format("fdinfo/{}", num)));
    std::string why = unsupported_fd(pid, num, p->link, &info);
    if (!why.empty()) fail("cannot checkpoint process {}: {}", pid, why);
    p->info_lines = proc::split(info, '\n');
    for (auto& line : p->info_lines) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        p->info.emplace(line.substr(0, colon), std::string(proc::trim(line.substr(colon + 1))));
    }
    uint32_t flags = static_cast<uint32_t>(proc::parse_u64(p->info.at("flags"), 8));
    p->cloexec = flags & O_CLOEXEC;
    p->flags = flags & ~static_cast<uint32_t>(O_CLOEXEC);
    p->pos = proc::parse_i64(p->info.at("pos"));
    p->local = ctx.steal_fd(num);
    if (::fstat(p->local.get(), &p->st) != 0) fail_errno(errno, "cannot stat fd {}", num);

    image::Fd* fd = ft->add_fds();
    fd->set_num(num);
    fd->set_cloexec(p->cloexec);
    for (auto& [rep, file] : descriptions)
      if (rep->st.st_dev == p->st.st_dev && rep->st.st_ino == p->st.st_ino &&
          same_description(pid, rep->num, num)) {
        fd->set_file_id(file->id());
        break;
      }
    if (fd->file_id()) {
      probes.push_back(std::move(p));
      continue;
    }
    image::OpenFile* f = ft->add_files();
    f->set_id(static_cast<uint64_t>(ft->files_size()));
    f->set_flags(p->flags);
    f->set_pos(p->pos);
    fd->set_file_id(f->id());
    fd_kind_of(*p).dump(ctx, *p, f, m);
    dump_locks(*p, f, ft);
    descriptions.emplace_back(p.get(), f);
    probes.push_back(std::move(p));
  }
  // What needs every description first: who holds which pipe end, what passes which file.
  auto of_kind = [&](image::OpenFile::KindCase kind, std::vector<FdProbe*>* ps,
                     std::vector<image::OpenFile*>* fs) {
    for (auto& [p, f] : descriptions)
      if (f->kind_case() == kind) ps->push_back(p), fs->push_back(f);
  };
  std::vector<FdProbe*> pipe_probes, socket_probes;
  std::vector<image::OpenFile*> pipe_files, socket_files;
  of_kind(image::OpenFile::kPipe, &pipe_probes, &pipe_files);
  of_kind(image::OpenFile::kSocket, &socket_probes, &socket_files);
  dump_pipes(pipe_probes, pipe_files, ft);
  dump_socket_queues(ctx, socket_probes, socket_files, *ft);
}

void restore_files(Restorer& r, const image::FileTable& ft) {
  Tracee& t = r.tracee();
  FileRestoreState s;
  for (auto& fd : ft.fds()) s.fd_numbers[fd.file_id()].push_back(fd.num());

  std::map<uint64_t, UniqueFd> local;
  for (auto& f : ft.files()) {
    if (!s.fd_numbers.count(f.id())) continue;
    UniqueFd fd;
    // A descriptor the caller provides for one of this file's numbers stands in for it, with
    // the status flags the process had set on its own (O_NONBLOCK: an event loop's pipes). The
    // description is the caller's too: it keeps none of its own flags there.
    for (int num : s.fd_numbers[f.id()]) {
      auto ext = r.external_fds.find(num);
      if (ext == r.external_fds.end()) continue;
      fd.reset(::fcntl(ext->second, F_DUPFD_CLOEXEC, 0));
      if (!fd) fail_errno(errno, "dup");
      if (::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE) != 0)
        fail_errno(errno, "cannot set the status flags of fd {}", num);
      if (f.kind_case() == image::OpenFile::kProvided)
        restore_socket_options(fd.get(), f.provided().options());
      break;
    }
    if (fd) {
      local[f.id()] = std::move(fd);
      continue;
    }
    fd = fd_kind_for(f.kind_case()).open(r, f, s);
    restore_description_locks(f, fd.get());
    local[f.id()] = std::move(fd);
  }
  finish_unix_sockets(r, ft, local, s);
  finish_ptys(ft, s);

  std::vector<image::Fd> order(ft.fds().begin(), ft.fds().end());
  std::sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.num() < b.num(); });
  std::map<uint64_t, int> installed;  // OpenFile.id -> first fd number holding it
  for (auto& fd : order) {
    int flags = fd.cloexec() ? O_CLOEXEC : 0;
    auto it = installed.find(fd.file_id());
    if (it != installed.end()) {
      t.syscall_checked("dup3", SYS_dup3, {it->second, fd.num(), flags});
      continue;
    }
    int tmp = r.send_fd(local.at(fd.file_id()).get());
    t.syscall_checked("dup3", SYS_dup3, {tmp, fd.num(), flags});
    t.syscall(SYS_close, {tmp});
    installed[fd.file_id()] = fd.num();
  }
  for (auto& f : ft.files())
    if (f.kind_case() == image::OpenFile::kEpoll && installed.count(f.id()))
      restore_epoll_targets(r, installed[f.id()], f.epoll(), ft);
  restore_posix_locks(r, ft);
  restore_flocks(r, ft, installed);
}

}  // namespace ferry::cr
