// ferry-init: the small process that outlives ferryd on a node.
//
//   ferry-init [--node NAME] [--cluster-id ID] [--restart-delay-ms N] -- FERRYD ARGS...
//
// It is the init of a local-cluster node (PID 1 of the node's PID namespace, holding the node's
// namespaces for as long as it lives) or, on a real machine, the main process of ferry's
// systemd unit (a child subreaper). It
//  - starts ferryd and starts it again whenever it dies (after a short, growing delay);
//  - reaps every orphaned process (a task whose ferryd died) and keeps its exit status until
//    a ferryd has taken note of it;
//  - keeps descriptors for ferryd (the read ends of the tasks' output pipes), so that a task
//    never writes into a pipe without a reader while its ferryd restarts, and counts how much of
//    each has been consumed, so that the next ferryd goes on at the exact byte.
// It holds no task state beyond that and does no networking: it is meant to never fail.
// The protocol with ferryd is in init_protocol.h.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "nodeinit/init_protocol.h"

namespace {

constexpr size_t kMaxExits = 10000;
constexpr int kMaxRestartDelayMs = 5000;
constexpr int kStableMs = 10000;  // a ferryd that ran this long resets the delay

struct Kept {
  int fd = -1;
  unsigned long long consumed = 0;
};

struct Exit {
  pid_t pid;
  unsigned long long start;
  int status;
};

void say(const char* fmt, const std::string& a = "", long long n = 0) {
  std::fprintf(stderr, "ferry-init: ");
  std::fprintf(stderr, fmt, a.c_str(), n);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

long long now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

// Field 22 of /proc/PID/stat (start time in clock ticks), read while the process is a zombie.
unsigned long long start_ticks(pid_t pid) {
  char path[64], buf[1024];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  p += 2;  // field 3
  for (int field = 3; field < 22 && *p; field++) {
    p = std::strchr(p, ' ');
    if (!p) return 0;
    p++;
  }
  return std::strtoull(p, nullptr, 10);
}

class Init {
 public:
  Init(std::vector<std::string> argv, int restart_delay_ms)
      : argv_(std::move(argv)), base_delay_ms_(restart_delay_ms), delay_ms_(restart_delay_ms) {
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != sizeof id) id = static_cast<uint64_t>(now_ms());
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(id));
    id_ = hex;
  }

  int run();

 private:
  void start_ferryd();
  void on_child_exits();
  void on_message();
  void send(const std::string& msg, int fd = -1);
  void send_state();
  void disconnect();

  std::vector<std::string> argv_;
  std::string id_;
  int base_delay_ms_, delay_ms_;
  pid_t ferryd_ = -1;
  long long ferryd_started_ms_ = 0;
  long long restart_at_ms_ = 0;  // 0: no restart pending
  unsigned starts_ = 0;
  int sock_ = -1;  // our end of the socket pair with the current ferryd
  bool stopping_ = false;
  std::map<std::string, Kept> kept_;
  std::deque<Exit> exits_;
};

void Init::send(const std::string& msg, int fd) {
  if (sock_ >= 0 && !ferry::init::send_message(sock_, msg, fd)) disconnect();
}

void Init::send_state() {
  send("hello " + id_ + " " + std::to_string(starts_));
  for (auto& [name, k] : kept_) send("kept " + name + " " + std::to_string(k.consumed), k.fd);
  for (auto& e : exits_)
    send("exit " + std::to_string(e.pid) + " " + std::to_string(e.start) + " " +
         std::to_string(e.status));
  send("ready");
}

void Init::disconnect() {
  if (sock_ >= 0) ::close(sock_);
  sock_ = -1;
}

void Init::start_ferryd() {
  restart_at_ms_ = 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    say("cannot make a socket pair for ferryd: %s", std::strerror(errno));
    restart_at_ms_ = now_ms() + kMaxRestartDelayMs;
    return;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    say("cannot start ferryd: %s", std::strerror(errno));
    ::close(sv[0]);
    ::close(sv[1]);
    restart_at_ms_ = now_ms() + kMaxRestartDelayMs;
    return;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(sv[1], 3) != 3) _exit(126);
    ::close_range(4, ~0U, 0);
    char fdnum[] = "3";
    ::setenv(ferry::init::kFdEnv, fdnum, 1);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(sv[1]);
  disconnect();
  sock_ = sv[0];
  ferryd_ = pid;
  ferryd_started_ms_ = now_ms();
  starts_++;
  if (starts_ > 1) say("ferryd started again as pid %s", std::to_string(pid));
  send_state();
}

void Init::on_child_exits() {
  for (;;) {
    siginfo_t si{};
    if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0) return;
    pid_t pid = si.si_pid;
    unsigned long long start = start_ticks(pid);
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != pid) continue;
    if (pid == ferryd_) {
      ferryd_ = -1;
      disconnect();
      if (stopping_) return;
      // A ferryd that keeps dying is started again less and less often.
      if (now_ms() - ferryd_started_ms_ >= kStableMs)
        delay_ms_ = base_delay_ms_;
      else
        delay_ms_ = std::min(kMaxRestartDelayMs, std::max(delay_ms_ * 2, 100));
      say("ferryd ended (%s); starting it again",
          WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                            : "signal " + std::to_string(WTERMSIG(status)));
      restart_at_ms_ = now_ms() + delay_ms_;
      continue;
    }
    if (exits_.size() >= kMaxExits) exits_.pop_front();
    exits_.push_back({pid, start, status});
    send("exit " + std::to_string(pid) + " " + std::to_string(start) + " " +
         std::to_string(status));
  }
}

void Init::on_message() {
  std::string text;
  int fd = -1;
  if (!ferry::init::receive_message(sock_, &text, &fd)) {
    disconnect();  // ferryd is gone; its exit comes as SIGCHLD
    return;
  }
  const char* buf = text.c_str();
  char verb[16] = {0}, name[256] = {0};
  unsigned long long a = 0, b = 0;
  int fields = std::sscanf(buf, "%15s %255s %llu %llu", verb, name, &a, &b);
  std::string v = verb;
  if (v == "keep" && fields >= 3 && fd >= 0) {
    Kept& k = kept_[name];
    if (k.fd >= 0) ::close(k.fd);
    k.fd = fd;
    k.consumed = a;
    return;
  }
  if (fd >= 0) ::close(fd);
  if (v == "drop" && fields >= 2) {
    auto it = kept_.find(name);
    if (it != kept_.end()) {
      ::close(it->second.fd);
      kept_.erase(it);
    }
  } else if (v == "consume" && fields >= 3) {
    auto it = kept_.find(name);
    unsigned long long done = 0;
    if (it != kept_.end()) {
      char sink[65536];
      while (done < a) {
        ssize_t r = ::read(it->second.fd, sink, std::min<unsigned long long>(sizeof sink, a - done));
        if (r <= 0) break;
        done += static_cast<unsigned long long>(r);
      }
      it->second.consumed += done;
    }
    send("consumed " + std::string(name) + " " +
         std::to_string(it == kept_.end() ? 0 : it->second.consumed));
  } else if (v == "forget" && fields >= 3) {
    pid_t pid = static_cast<pid_t>(std::strtol(name, nullptr, 10));
    for (auto it = exits_.begin(); it != exits_.end(); ++it)
      if (it->pid == pid && it->start == a) {
        exits_.erase(it);
        break;
      }
  }
}

int Init::run() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  int sfd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    say("signalfd: %s", std::strerror(errno));
    return 1;
  }
  if (::getpid() != 1) ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  start_ferryd();
  for (;;) {
    int timeout = -1;
    if (restart_at_ms_) timeout = static_cast<int>(std::max(0LL, restart_at_ms_ - now_ms()));
    pollfd p[2] = {{sfd, POLLIN, 0}, {sock_, POLLIN, 0}};
    int n = ::poll(p, sock_ >= 0 ? 2 : 1, timeout);
    if (n < 0 && errno != EINTR) return 1;
    if (p[0].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
          stopping_ = true;
          restart_at_ms_ = 0;
          if (ferryd_ > 0) ::kill(ferryd_, SIGTERM);
        }
      }
      on_child_exits();
      if (stopping_ && ferryd_ < 0) return 0;
    }
    if (sock_ >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) on_message();
    if (restart_at_ms_ && now_ms() >= restart_at_ms_ && !stopping_) start_ferryd();
  }
}

}  // namespace

int main(int argc, char** argv) {
  int delay = 200;
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--") {
      i++;
      break;
    }
    if (a == "--restart-delay-ms" && i + 1 < argc)
      delay = std::atoi(argv[++i]);
    else if ((a == "--node" || a == "--cluster-id") && i + 1 < argc)
      i++;  // for whoever looks at our command line: which node of which cluster we are
    else {
      std::fprintf(stderr, "usage: ferry-init [--node NAME] [--cluster-id ID] "
                           "[--restart-delay-ms N] -- FERRYD ARGS...\n");
      return 2;
    }
  }
  if (i >= argc) {
    std::fprintf(stderr, "ferry-init: no ferryd to run\n");
    return 2;
  }
  std::vector<std::string> ferryd(argv + i, argv + argc);
  return Init(std::move(ferryd), std::max(delay, 10)).run();
}
