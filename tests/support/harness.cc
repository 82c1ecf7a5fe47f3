#include "support/harness.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "cr/pagemap.h"

namespace ferry::test {

std::string ferry_bin() {
  return FERRY_BIN;
}
std::string target_path(const std::string& name) {
  return std::string(FERRY_TARGETS_DIR) + "/" + name;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/ferry-test-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ScopedTmpfs::ScopedTmpfs(const std::string& path, const std::string& size) : path_(path) {
  if (::mkdir(path_.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot make " + path_ + ": " + std::strerror(errno));
  std::string options = "size=" + size + ",mode=0700";
  if (::mount("ferry-test-tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) != 0)
    throw std::runtime_error("cannot mount a tmpfs on " + path_ + ": " + std::strerror(errno));
}

ScopedTmpfs::~ScopedTmpfs() {
  // (Lazily: a process the test failed to end may still hold a file there.)
  ::umount2(path_.c_str(), MNT_DETACH);
}

namespace {

// Every test binary signs and checks images with a key of its own (FERRY_IMAGE_KEY, inherited
// by the ferry commands it runs), made at first use and removed at exit: tests leave no key on
// the machine and never touch the host's.
struct TestImageKey {
  TestImageKey() {
    if (std::getenv("FERRY_IMAGE_KEY")) return;
    ::setenv("FERRY_IMAGE_KEY", (dir.path() + "/image.key").c_str(), 1);
  }
  TempDir dir;
} test_image_key;

}  // namespace

namespace {

void redirect(const std::string& path, int target, int flags) {
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) _exit(126);
  ::dup2(fd, target);
  if (fd != target) ::close(fd);
}

int pidfd_of(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

pid_t spawn(const std::vector<std::string>& argv, const SpawnOptions& opts, int timeout_ms) {
  int ready[2] = {-1, -1};
  if (opts.ready_pipe && ::pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    // Its own group (or session): terminal signals of the test do not reach it.
    if (opts.new_session || opts.tty_fd >= 0)
      ::setsid();
    else
      ::setpgid(0, 0);
    if (opts.tty_fd >= 0) {
      for (int i = 0; i < 3; i++) ::dup2(opts.tty_fd, i);
    } else {
      redirect(opts.stdin_path, 0, O_RDONLY);
      redirect(opts.stdout_path, 1, O_WRONLY | O_CREAT | O_APPEND);
      redirect(opts.stderr_path, 2, O_WRONLY | O_CREAT | O_APPEND);
    }
    if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) _exit(126);
    if (opts.uid >= 0 &&
        (::setgroups(0, nullptr) != 0 || ::setresgid(opts.uid, opts.uid, opts.uid) != 0 ||
         ::setresuid(opts.uid, opts.uid, opts.uid) != 0))
      _exit(126);
    if (opts.ready_pipe) {
      // The ready fd must not be one the target cares about: put it at 100.
      ::dup2(ready[1], 100);
      ::setenv("FERRY_READY_FD", "100", 1);
    }
    for (auto& e : opts.env) ::putenv(::strdup(e.c_str()));
    // Close everything else the test runner had open.
    if (opts.ready_pipe) {
      ::syscall(SYS_close_range, 3, 99, 0);
      ::syscall(SYS_close_range, 101, ~0u, 0);
    } else {
      ::syscall(SYS_close_range, 3, ~0u, 0);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  if (opts.ready_pipe) {
    ::close(ready[1]);
    pollfd p{ready[0], POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    char c = 0;
    bool ok = r == 1 && ::read(ready[0], &c, 1) == 1 && c == 'R';
    ::close(ready[0]);
    if (!ok) {
      // Closed without a word: it is ending (bounded wait); silent: it is killed.
      int code = r == 1 ? wait_exit(pid, 2000) : -1;
      if (code < 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
      if (code == 77)
        throw TargetUnsupported(fmt::format("{} needs what this machine lacks", argv[0]));
      throw std::runtime_error(fmt::format("{} did not become ready (exit {})", argv[0], code));
    }
  }
  return pid;
}

int wait_exit(pid_t pid, int timeout_ms) {
  int pfd = pidfd_of(pid);
  if (pfd >= 0) {
    pollfd p{pfd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    ::close(pfd);
    if (r != 1) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return -1;
    }
  }
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -2;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -3;
}

CmdResult ferry(const std::vector<std::string>& args, int timeout_ms) {
  std::vector<std::string> argv{ferry_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout_ms);
}

CmdResult run_command(const std::vector<std::string>& argv, int timeout_ms) {
  TempDir io;
  SpawnOptions o;
  o.stdout_path = io / "out";
  o.stderr_path = io / "err";
  pid_t pid = spawn(argv, o);
  CmdResult r;
  r.status = wait_exit(pid, timeout_ms);
  r.out = read_file(io / "out");
  r.err = read_file(io / "err");
  return r;
}

ProcessGuard::~ProcessGuard() {
  for (pid_t pid : pids_) {
    if (::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, WNOHANG);
  }
}

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

void write_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path);
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ::close(fd);
    throw std::runtime_error("short write to " + path);
  }
  ::close(fd);
}

bool process_alive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  std::string stat = read_file(fmt::format("/proc/{}/stat", pid));
  auto close = stat.rfind(')');
  return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] != 'Z';
}

uint64_t shared_pages(pid_t pid, uint64_t start, uint64_t end) {
  constexpr uint64_t kPage = 4096;
  int fd = ::open(fmt::format("/proc/{}/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot open the pagemap of {}", pid));
  uint64_t shared = 0;
  std::vector<uint64_t> entries(512);
  for (uint64_t at = start; at < end; at += entries.size() * kPage) {
    uint64_t n = std::min<uint64_t>(entries.size(), (end - at) / kPage);
    if (::pread(fd, entries.data(), n * 8, static_cast<off_t>(at / kPage * 8)) !=
        static_cast<ssize_t>(n * 8))
      break;
    for (uint64_t i = 0; i < n; i++)
      shared += cr::pagemap::maybe_shared(entries[i]);
  }
  ::close(fd);
  return shared;
}

uint64_t shared_pages(pid_t pid) {
  uint64_t shared = 0;
  std::istringstream maps(read_file(fmt::format("/proc/{}/maps", pid)));
  for (std::string line; std::getline(maps, line);) {
    uint64_t start = 0, end = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) == 3 && perms[1] == 'w' &&
        perms[3] == 'p')
      shared += shared_pages(pid, start, end);
  }
  return shared;
}

void become_subreaper() {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
}

}  // namespace ferry::test
