// A task's channel ends stay as the task made them, through migrations and a snapshot's restore:
// - at other numbers than ferry gave them (as a shell's `exec 3>&1 1>/dev/null` does): they are
//   known by what they are, not by their numbers. Its writer moves its stdout to a new number and
//   puts /dev/null at 1, its reader does the same with stdin; both migrate mid-stream, a snapshot
//   is taken and restored as a new job, and the job and its restore each deliver every byte (or
//   message) once, in order;
// - non-blocking, as an event loop sets its pipes (and its control descriptor), and with the
//   socket options it set on a socket ferry gave it.
#include <gtest/gtest.h>

#include "e2e/snapshot_helpers.h"
#include "support/cluster.h"

namespace ferry::test {
namespace {

constexpr int kBlocks = 600;  // of about 16 KB: 9.6 MB, written in 3-4 s, read in about 5 s

// gen.py [PAUSE]: the blocks into the channel, from the number it moved it to.
std::string gen_py() {
  return "import os, sys, time\n"
         "pause = float(sys.argv[1]) if len(sys.argv) > 1 else 0.005\n"
         "out = os.dup(1)\n"
         "os.dup2(os.open('/dev/null', os.O_WRONLY), 1)\n"
         "for i in range(" +
         std::to_string(kBlocks) +
         "):\n"
         "    b = b'%d:' % i + bytes([i % 251]) * 16000\n"
         "    while b:\n"
         "        b = b[os.write(out, b):]\n"
         "    time.sleep(pause)\n";
}

// late.py: reads more slowly than gen writes (its pipe is full when it moves); prints the hash
// and the byte count. Of messages, it checks each one whole.
std::string late_py(bool messages) {
  return std::string(
             "import hashlib, os, time\n"
             "inp = os.dup(0)\n"
             "os.dup2(os.open('/dev/null', os.O_RDONLY), 0)\n"
             "h, n, i = hashlib.sha256(), 0, 0\n"
             "while True:\n"
             "    m = os.read(inp, 16384)\n"
             "    if not m: break\n") +
         (messages ? "    assert m == b'%d:' % i + bytes([i % 251]) * 16000, 'message %d' % i\n"
                   : "") +
         "    h.update(m); n += len(m); i += 1\n"
         "    time.sleep(0.008)\n"
         "print(h.hexdigest(), n, flush=True)\n";
}

class MovedEndsTest : public ::testing::TestWithParam<bool> {};

TEST_P(MovedEndsTest, ATaskHoldingItsEndsAtOtherNumbersKeepsThemThroughMigrationsAndARestore) {
  const bool messages = GetParam();
  TestCluster c(3);
  ASSERT_TRUE(c.up());
  TempDir dir;
  write_file(dir / "gen.py", gen_py());
  write_file(dir / "late.py", late_py(messages));
  // (The reference run goes through a plain pipe, which keeps no message boundaries.)
  write_file(dir / "late_bytes.py", late_py(false));
  CmdResult local = run_command(
      {"/bin/sh", "-c", "python3 " + (dir / "gen.py") + " 0 | python3 " + (dir / "late_bytes.py")});
  ASSERT_EQ(local.status, 0) << local.err;
  std::string job = start_job(c, dir, "moved", gen_to_late_yaml(dir, messages));
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 1u << 20));
  nlohmann::json rep = c.migrate("moved/gen", "node3");
  ASSERT_EQ(rep.value("outcome", ""), "migrated") << rep.dump();
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_written", 3u << 20));
  rep = c.migrate("moved/late", "node1");
  ASSERT_EQ(rep.value("outcome", ""), "migrated") << rep.dump();
  nlohmann::json s = snapshot(c, {job});
  EXPECT_EQ(s.value("state", ""), "complete") << s.dump();
  ASSERT_TRUE(s.value("consistent", false)) << s.dump();
  ASSERT_EQ(s["channels"].size(), 1u) << s.dump();
  // Bytes were on their way at the cut: the restore has a part of the stream to carry on with.
  EXPECT_GT(s["channels"][0].value("recorded_bytes", 0ull), 0ull) << s.dump();
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  for (const std::string name : {"moved", "again"}) {
    CmdResult w = c.ferry({"job", "wait", name, "--timeout", "60"});
    EXPECT_EQ(w.status, 0) << name << ": " << w.out << w.err << c.logs(name + "/late");
    EXPECT_EQ(c.logs(name + "/late"), local.out) << name;
    EXPECT_EQ(c.logs(name + "/gen").size(), 0u) << name << ": nothing goes to its output";
  }
}

// w sets its stdout and its control descriptor non-blocking, and a receive timeout on the latter
// (a socket option); r sets its stdin non-blocking. Each checks what it set before every write
// or read and exits 3 when something is gone. w writes until SIGUSR1.
const char* kNonBlockingWriter =
    "import os, signal, socket, struct, sys, time\n"
    "ctl = int(os.environ['FERRY_CONTROL_FD'])\n"
    "fds = (1, ctl)\n"
    "for fd in fds: os.set_blocking(fd, False)\n"
    "timeout = struct.pack('ll', 0, 250000)\n"
    "s = socket.socket(fileno=os.dup(ctl))\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)\n"
    "timeout = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)  # (in ticks)\n"
    "done = []\n"
    "signal.signal(signal.SIGUSR1, lambda *a: done.append(1))\n"
    "i = 0\n"
    "while not done:\n"
    "    for fd in fds:\n"
    "        if os.get_blocking(fd): sys.stderr.write('fd %d blocks\\n' % fd); sys.exit(3)\n"
    "    if s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) != timeout:\n"
    "        sys.stderr.write('SO_RCVTIMEO is gone\\n'); sys.exit(3)\n"
    "    try:\n"
    "        os.write(1, b'%d\\n' % i); i += 1\n"
    "    except BlockingIOError: pass\n"
    "    time.sleep(0.01)\n";
const char* kNonBlockingReader =
    "import os, select, sys\n"
    "os.set_blocking(0, False)\n"
    "while True:\n"
    "    if os.get_blocking(0): sys.stderr.write('fd 0 blocks\\n'); sys.exit(3)\n"
    "    select.select([0], [], [], 0.05)\n"
    "    try:\n"
    "        if not os.read(0, 65536): break\n"
    "    except BlockingIOError: pass\n";

uint64_t bytes_written(TestCluster& c, const std::string& job) {
  nlohmann::json j =
      nlohmann::json::parse(c.ferry({"job", "show", job, "--json"}).out, nullptr, false);
  if (j.is_discarded() || !j.contains("channels") || j["channels"].empty()) return 0;
  return j["channels"][0].value("bytes_written", 0ull);
}

TEST(EndSettingsTest, NonBlockingEndsAndASocketOptionStayThroughMovesAndARestore) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  TempDir dir;
  write_file(dir / "gen.py", kNonBlockingWriter);
  write_file(dir / "late.py", kNonBlockingReader);
  std::string job = start_job(c, dir, "nb", gen_to_late_yaml(dir, false));
  ASSERT_FALSE(job.empty());
  ASSERT_TRUE(wait_channel(c, job, 0, "bytes_delivered", 0));
  for (auto [task, to] : {std::pair{"nb/gen", "node2"}, std::pair{"nb/late", "node1"}}) {
    nlohmann::json rep = c.migrate(task, to);
    ASSERT_EQ(rep.value("outcome", ""), "migrated") << rep.dump();
  }
  nlohmann::json s = snapshot(c, {job});
  ASSERT_TRUE(s.value("consistent", false)) << s.dump();
  CmdResult r = c.ferry({"snapshot", "restore", s.value("id", ""), "--name", "again"}, "", 120000);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  for (const std::string name : {"nb", "again"}) {
    // (Some writes after the moves and the restore: each looked at its flags first.)
    uint64_t now = bytes_written(c, name);
    ASSERT_TRUE(wait_channel(c, name, 0, "bytes_written", now + 100)) << name;
    ASSERT_EQ(c.ferry({"kill", name + "/gen", "USR1"}).status, 0) << name;
    CmdResult w = c.ferry({"job", "wait", name, "--timeout", "30"});
    EXPECT_EQ(w.status, 0) << name << ": " << w.out << w.err << c.logs(name + "/gen")
                           << c.logs(name + "/late");
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, MovedEndsTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Messages" : "Bytes"; });

}  // namespace
}  // namespace ferry::test
