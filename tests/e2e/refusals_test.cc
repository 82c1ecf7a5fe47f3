// What ferry cannot capture is refused before the process is frozen, with a message naming the
// resource; the process keeps running untouched. Bad input gets one clear line and changes nothing.
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/roundtrip.h"
#include "util/fd.h"

namespace ferry::test {
namespace {

char process_state(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos ? '?' : stat[close + 2];
}

void refused_and_still_running(const std::string& mode, const std::string& expected_words,
                               const std::string& arg = "") {
  RoundTrip rt;
  pid_t pid;
  try {
    pid = rt.start_target("t_refuse", {mode, arg.empty() ? rt.dir.path() : arg});
  } catch (const TargetUnsupported& e) {
    GTEST_SKIP() << e.what();
  }
  CmdResult r = ferry({"checkpoint", std::to_string(pid), "--images", rt.images()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(expected_words), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  char st = process_state(pid);
  EXPECT_TRUE(st == 'S' || st == 'R') << "state " << st;
  EXPECT_EQ(::access((rt.images() + "/core.img").c_str(), F_OK), -1) << "an image was written";
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

}  // namespace

TEST(RefusalsTest, MultiThreadedProcess) {
  refused_and_still_running("threads", "threads");
}
TEST(RefusalsTest, ProcessWithATcpSocket) {
  refused_and_still_running("tcp", "TCP socket");
}
TEST(RefusalsTest, ProcessWithAChild) {
  refused_and_still_running("child", "child processes");
}

// Each message names the file and why (issue 9).
TEST(RefusalsTest, ADescriptorOfAnotherNamespace) {
  refused_and_still_running("nsfd-foreign", "fd 3 is a descriptor of another uts namespace");
}
TEST(RefusalsTest, SignalDrivenIo) {
  refused_and_still_running("async", "fd 3 (pipe:[");
  refused_and_still_running("async-socket", "]) is set for signal-driven I/O (O_ASYNC)");
}
TEST(RefusalsTest, ALease) {
  refused_and_still_running("lease", "/l; leases");
}
TEST(RefusalsTest, AProcfsFile) {
  refused_and_still_running("procfs", "fd 3 is the procfs file /proc/");
}

TEST(RefusalsTest, AListenerWithAConnectionWaiting) {
  refused_and_still_running("tcp", "with 1 connection(s) waiting to be accepted");
}
TEST(RefusalsTest, AUdpSocketHoldingADatagram) {
  refused_and_still_running("udp-queued", "holding datagrams not yet read");
}
TEST(RefusalsTest, AUnixSocketWithAPeerOutside) {
  std::string name = "ferry-test-outside-" + std::to_string(::getpid());
  ferry::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::copy(name.begin(), name.end(), a.sun_path + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
            0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  refused_and_still_running("unix-outside", "connected to a socket outside the process", name);
}

TEST(RefusalsTest, ProcessWithIoUring) {
  refused_and_still_running("io_uring", "io_uring");
}

TEST(RefusalsTest, ProcessTracedByAnotherTracer) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_refuse", {"tcp"});
  // The test itself is the other tracer.
  ASSERT_EQ(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0);
  CmdResult r = ferry({"checkpoint", std::to_string(pid), "--images", rt.images()});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("traced by process"), std::string::npos) << r.err;
  // Detaching needs a stopped tracee.
  ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, __WALL), pid);
  ASSERT_EQ(::ptrace(PTRACE_DETACH, pid, nullptr, nullptr), 0);
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

TEST(RefusalsTest, NonExistentPid) {
  TempDir d;
  CmdResult r = ferry({"checkpoint", "4194000", "--images", d / "img"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no such process"), std::string::npos) << r.err;
}

TEST(RefusalsTest, CorruptImageIsRejectedBeforeAnythingRuns) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  ASSERT_EQ(rt.checkpoint(pid).status, 0);
  std::string core = rt.images() + "/core.img";
  std::string bytes = read_file(core);
  bytes[bytes.size() / 2] ^= 0x40;
  write_file(core, bytes);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("does not carry this host's signature"), std::string::npos) << r.err;
  EXPECT_FALSE(process_alive(pid));
}

TEST(RefusalsTest, TruncatedPagesAreRejected) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  ASSERT_EQ(rt.checkpoint(pid).status, 0);
  std::string pages = rt.images() + "/pages.img";
  ASSERT_EQ(::truncate(pages.c_str(), 8192), 0);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("pages.img"), std::string::npos) << r.err;
}

TEST(RefusalsTest, CorruptPageDataIsCaughtBeforeTheProcessRuns) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static");
  ASSERT_EQ(rt.checkpoint(pid).status, 0);
  std::string pages = rt.images() + "/pages.img";
  int fd = ::open(pages.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, 4096 + 100), 1);
  c ^= 1;
  ASSERT_EQ(::pwrite(fd, &c, 1, 4096 + 100), 1);
  ::close(fd);
  std::string out_before = read_file(rt.out_path());
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("does not match its tag"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(rt.out_path()), out_before) << "the half-restored process ran";
}

TEST(RefusalsTest, MissingImageDirectory) {
  CmdResult r = ferry({"restore", "--images", "/nonexistent/ferry-image"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("cannot open image directory"), std::string::npos) << r.err;
}

}  // namespace ferry::test
