// File locks, from the "lock:" lines of fdinfo:
//   "1: POSIX  ADVISORY  WRITE 10635 fe:00:10952752 10 29"
//   "1: OFDLCK ADVISORY  READ -1 fe:00:10952752 50 EOF"
//   "1: FLOCK  ADVISORY  WRITE 10635 fe:00:10952753 0 EOF"
// POSIX locks belong to the process and are taken again inside the helper. OFD and flock locks
// belong to the open file description: OFD locks are taken on it before it is handed over (their
// owner shows as -1 anyway); flock locks inside the helper too, because the kernel records who
// took one, and /proc/locks must name the process, not ferry.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "cr/resources/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

struct flock to_flock(const image::FileLock& l) {
  struct flock fl {};
  fl.l_type = l.write() ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(l.start());
  fl.l_len = l.end() == UINT64_MAX ? 0 : static_cast<off_t>(l.end() - l.start() + 1);
  return fl;
}

}  // namespace

void dump_locks(const FdProbe& p, image::OpenFile* f, image::FileTable* ft) {
  for (auto& line : p.info_lines) {
    if (line.rfind("lock:", 0) != 0) continue;
    auto w = proc::split_ws(line.substr(5));
    if (w.size() >= 2 && w[1] == "->") continue;  // a waiter, not a holder
    if (w.size() < 8) fail("malformed lock line '{}'", line);
    image::FileLock l;
    if (w[1] == "POSIX")
      l.set_kind(image::FileLock::POSIX);
    else if (w[1] == "OFDLCK")
      l.set_kind(image::FileLock::OFD);
    else if (w[1] == "FLOCK")
      l.set_kind(image::FileLock::FLOCK);
    else
      fail("fd {} holds a {} on {}; leases and delegations are not supported", p.num, w[1], p.link);
    l.set_write(w[3] == "WRITE");
    l.set_start(proc::parse_u64(w[6]));
    l.set_end(w[7] == "EOF" ? UINT64_MAX : proc::parse_u64(w[7]));
    if (l.kind() == image::FileLock::POSIX) {
      image::PosixLock* pl = ft->add_posix_locks();
      pl->set_fd(p.num);
      *pl->mutable_lock() = l;
    } else {
      *f->add_locks() = l;
    }
  }
}

void restore_description_locks(const image::OpenFile& f, int local_fd) {
  for (auto& l : f.locks()) {
    if (l.kind() != image::FileLock::OFD) continue;
    struct flock fl = to_flock(l);
    if (::fcntl(local_fd, F_OFD_SETLK, &fl) != 0)
      fail_errno(errno, "cannot take the OFD lock again");
  }
}

void restore_flocks(Restorer& r, const image::FileTable& ft,
                    const std::map<uint64_t, int>& installed) {
  for (auto& f : ft.files())
    for (auto& l : f.locks()) {
      if (l.kind() != image::FileLock::FLOCK || !installed.count(f.id())) continue;
      int num = installed.at(f.id());
      long rc = r.tracee().syscall(SYS_flock, {num, (l.write() ? LOCK_EX : LOCK_SH) | LOCK_NB});
      if (rc < 0)
        fail_errno(static_cast<int>(-rc),
                   "cannot take the flock() lock on fd {} again (held by another process?)", num);
    }
}

void restore_posix_locks(Restorer& r, const image::FileTable& ft) {
  for (auto& pl : ft.posix_locks()) {
    r.reset_stage();
    struct flock fl = to_flock(pl.lock());
    uint64_t p = r.stage(&fl, sizeof fl);
    long rc = r.tracee().syscall(SYS_fcntl, {pl.fd(), F_SETLK, static_cast<long>(p)});
    if (rc < 0)
      fail_errno(static_cast<int>(-rc),
                 "cannot take the POSIX lock on fd {} again (held by another process?)", pl.fd());
  }
}

}  // namespace ferry::cr
