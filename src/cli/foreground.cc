#include "cli/foreground.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "util/error.h"
#include "util/fd.h"

namespace ferry::cli {
namespace {

sigset_t forwarded() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT, SIGALRM})
    sigaddset(&s, sig);
  return s;
}

// Gives the terminal to the process's group while it runs, and takes it back afterwards.
class TerminalHandoff {
 public:
  explicit TerminalHandoff(pid_t pid) {
    if (!::isatty(0) || ::tcgetpgrp(0) != ::getpgrp()) return;
    if (::getpgid(pid) != pid || ::getsid(pid) != ::getsid(0)) return;
    ::signal(SIGTTOU, SIG_IGN);
    if (::tcsetpgrp(0, pid) == 0) active_ = true;
  }
  ~TerminalHandoff() {
    if (active_) ::tcsetpgrp(0, ::getpgrp());
  }

 private:
  bool active_ = false;
};

}  // namespace

void block_forwarded_signals() {
  sigset_t s = forwarded();
  ::sigprocmask(SIG_BLOCK, &s, nullptr);
}

int wait_foreground(pid_t pid) {
  sigset_t s = forwarded();
  UniqueFd sigfd(::signalfd(-1, &s, SFD_CLOEXEC));
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!sigfd || !pidfd) fail_errno(errno, "cannot watch the restored process");
  TerminalHandoff tty(pid);
  bool same_group = ::getpgid(pid) == ::getpgrp();
  for (;;) {
    pollfd fds[2] = {{pidfd.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail_errno(errno, "poll");
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      if (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
        // A terminal's signal already reached the process when it shares our group.
        bool from_tty = si.ssi_code == SI_KERNEL;
        if (!(from_tty && same_group)) ::kill(pid, static_cast<int>(si.ssi_signo));
      }
    }
    if (fds[0].revents & POLLIN) break;
  }
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) fail_errno(errno, "waitpid");
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 1;
}

}  // namespace ferry::cli
