// Pseudo-terminal pairs held whole by the process: the master (/dev/ptmx) and every holder of the
// slave. A new pair is made with the same settings (termios, window size, packet mode, lock);
// only its number may differ. Bytes waiting in either direction went through the line
// discipline already and cannot be put back as they were: such a pair is refused, as is one
// whose slave another process holds, or that is the process's controlling terminal.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/resources/files/sockets.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

dev_t slave_rdev(uint32_t index) {
  return makedev(136 + index / 256, index % 256);  // UNIX98_PTY_SLAVE_MAJOR
}

uint32_t index_of(int master) {
  unsigned n = 0;
  if (::ioctl(master, TIOCGPTN, &n) != 0) fail_errno(errno, "TIOCGPTN");
  return n;
}

// The fd numbers of `pid` whose file is the device `rdev` (following the magic links).
std::vector<int> holders(pid_t pid, dev_t rdev) {
  std::vector<int> out;
  for (auto& n : proc::list_dir(proc::path(pid, "fd"))) {
    struct stat st;
    if (::stat(proc::path(pid, "fd/" + n).c_str(), &st) == 0 && S_ISCHR(st.st_mode) &&
        st.st_rdev == rdev)
      out.push_back(static_cast<int>(proc::parse_u64(n)));
  }
  return out;
}

// The master fd of `pid` for slave index `index`, or -1.
int master_for(pid_t pid, uint32_t index) {
  for (int num : holders(pid, makedev(5, 2))) {
    UniqueFd m = borrow_fd(pid, num);
    unsigned n = 0;
    if (::ioctl(m.get(), TIOCGPTN, &n) == 0 && n == index) return num;
  }
  return -1;
}

// Another process holding the slave: it would be cut off.
pid_t other_holder(pid_t pid, dev_t rdev) {
  for (auto& d : proc::list_dir("/proc")) {
    if (d.empty() || d[0] < '0' || d[0] > '9') continue;
    pid_t other = static_cast<pid_t>(proc::parse_u64(d));
    if (other == pid || other == ::getpid()) continue;  // ferry borrows the process's fds
    if (!holders(other, rdev).empty()) return other;
  }
  return 0;
}

int queued(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

}  // namespace

bool is_pty_master(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) == 5 && minor(st.st_rdev) == 2;
}

bool is_pty_slave(const struct stat& st) {
  return S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143;
}

std::string unsupported_pty(pid_t pid, int num, const std::string&) {
  struct stat st;
  if (::stat(proc::path(pid, fmt::format("fd/{}", num)).c_str(), &st) != 0) return "";
  uint32_t index;
  int master;
  if (is_pty_master(st)) {
    master = num;
    UniqueFd m = borrow_fd(pid, num);
    index = index_of(m.get());
  } else if (is_pty_slave(st)) {
    index = (major(st.st_rdev) - 136) * 256 + minor(st.st_rdev);
    master = master_for(pid, index);
    if (master < 0) return "";  // a terminal of someone else's: the terminal kind
  } else {
    return "";
  }
  std::string what =
      fmt::format("fd {} is pseudo-terminal /dev/pts/{} (master fd {})", num, index, master);
  proc::Stat pst(pid);
  if (static_cast<dev_t>(pst.field(7)) == slave_rdev(index))
    return what + ", the process's controlling terminal; not supported yet";
  if (pid_t other = other_holder(pid, slave_rdev(index)))
    return fmt::format("{}, whose slave process {} holds too", what, other);
  UniqueFd m = borrow_fd(pid, master);
  if (int n = queued(m.get()))
    return fmt::format("{}, with {} bytes written on the slave and not yet read", what, n);
  for (int s : holders(pid, slave_rdev(index))) {
    UniqueFd sl = borrow_fd(pid, s);
    if (int n = queued(sl.get()))
      return fmt::format("{}, with {} bytes typed on the master and not yet read", what, n);
  }
  return "";
}

bool dump_pty(DumpContext& ctx, FdProbe& p, image::OpenFile* f) {
  pid_t pid = ctx.pid();
  bool master = is_pty_master(p.st);
  if (!master && !(is_pty_slave(p.st) &&
                   master_for(pid, (major(p.st.st_rdev) - 136) * 256 + minor(p.st.st_rdev)) >= 0))
    return false;
  if (std::string why = unsupported_pty(pid, p.num, p.link); !why.empty())
    fail("cannot checkpoint process {}: {}", pid, why);
  image::Pty* t = f->mutable_pty();
  t->set_master(master);
  if (!master) {
    t->set_index((major(p.st.st_rdev) - 136) * 256 + minor(p.st.st_rdev));
    return true;
  }
  int fd = p.local.get();
  t->set_index(index_of(fd));
  termios tio{};
  winsize ws{};
  int locked = 0, packet = 0;
  if (::ioctl(fd, TCGETS, &tio) != 0 || ::ioctl(fd, TIOCGWINSZ, &ws) != 0)
    fail_errno(errno, "cannot read the settings of pseudo-terminal {}", t->index());
  ::ioctl(fd, TIOCGPTLCK, &locked);
  ::ioctl(fd, TIOCGPKT, &packet);
  t->set_termios(std::string(reinterpret_cast<char*>(&tio), sizeof tio));
  t->set_winsize(std::string(reinterpret_cast<char*>(&ws), sizeof ws));
  t->set_locked(locked != 0);
  t->set_packet_mode(packet != 0);
  return true;
}

UniqueFd open_pty(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  const image::Pty& want = f.pty();
  auto it = s.pty_masters.find(want.index());
  if (it == s.pty_masters.end()) {
    const image::Pty* settings = nullptr;
    for (auto& g : r.image().files().files())
      if (g.kind_case() == image::OpenFile::kPty && g.pty().master() &&
          g.pty().index() == want.index())
        settings = &g.pty();
    if (!settings) fail("image: pseudo-terminal slave {} without its master", want.index());
    UniqueFd m(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!m || ::unlockpt(m.get()) != 0) fail_errno(errno, "cannot make a pseudo-terminal");
    termios tio{};
    winsize ws{};
    std::memcpy(&tio, settings->termios().data(), std::min(sizeof tio, settings->termios().size()));
    std::memcpy(&ws, settings->winsize().data(), std::min(sizeof ws, settings->winsize().size()));
    int packet = settings->packet_mode();
    if (::ioctl(m.get(), TCSETS, &tio) != 0 || ::ioctl(m.get(), TIOCSWINSZ, &ws) != 0 ||
        ::ioctl(m.get(), TIOCPKT, &packet) != 0)
      fail_errno(errno, "cannot give pseudo-terminal {} its settings", want.index());
    uint32_t now = index_of(m.get());
    if (now != want.index())
      r.notes.push_back(
          fmt::format("pseudo-terminal /dev/pts/{} is /dev/pts/{} now", want.index(), now));
    it = s.pty_masters.emplace(want.index(), std::move(m)).first;
  }
  UniqueFd fd;
  int flags = static_cast<int>(reopen_flags(f.flags()));
  if (want.master()) {
    fd.reset(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0));
    if (!fd) fail_errno(errno, "dup");
  } else {
    fd = open_pty_slave(it->second.get(), f.flags());
  }
  if (::fcntl(fd.get(), F_SETFL, flags & ~O_ACCMODE) != 0)
    fail_errno(errno, "cannot restore the status flags of a pseudo-terminal");
  return fd;
}

UniqueFd open_pty_slave(int master, uint32_t image_flags) {
  // Without O_CLOEXEC: TIOCGPTPEER keeps it in the file's flags, where fdinfo would show it even
  // once the process's fd does not have it. The fd flag is set apart.
  int flags = static_cast<int>(reopen_flags(image_flags));
  UniqueFd peer(::ioctl(master, TIOCGPTPEER, (flags & O_ACCMODE) | O_NOCTTY));
  if (!peer || ::fcntl(peer.get(), F_SETFD, FD_CLOEXEC) != 0)
    fail_errno(errno, "cannot open a pseudo-terminal slave");
  // open(2) adds O_LARGEFILE, which TIOCGPTPEER (what openpty() uses) leaves out: the
  // description gets what it had.
  if (image_flags & kKernelLargeFile)
    return reopen_local(peer.get(), image_flags, "pseudo-terminal slave");
  return peer;
}

void finish_ptys(const image::FileTable& ft, FileRestoreState& s) {
  for (auto& f : ft.files())
    if (f.kind_case() == image::OpenFile::kPty && f.pty().master() && f.pty().locked() &&
        s.pty_masters.count(f.pty().index())) {
      int lock = 1;
      ::ioctl(s.pty_masters.at(f.pty().index()).get(), TIOCSPTLCK, &lock);
    }
  s.pty_masters.clear();
}

}  // namespace ferry::cr
