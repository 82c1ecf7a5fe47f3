// Hostile images and image directories, end to end (root): an image somebody else owns or
// forged, a checkpoint into a directory somebody else controls, FIFOs and links put where the
// image's files were, set-id bits, control characters in names, a pages.img changed while it is
// restored. Nothing may run with more rights than it had, nothing may hang, every refusal is
// one line.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "image/image_files.h"
#include "support/roundtrip.h"

namespace ferry::test {
namespace {

constexpr int kUser = 1001;

bool one_line(const std::string& err) {
  return !err.empty() && err.find('\n') == err.size() - 1;
}

// A directory the unprivileged user can write, inside the test's own (which it may traverse).
std::string make_user_dir(const RoundTrip& rt, const std::string& name) {
  EXPECT_EQ(::chmod(rt.dir.path().c_str(), 0711), 0);
  std::string d = rt.dir / name;
  EXPECT_EQ(::mkdir(d.c_str(), 0777), 0);
  EXPECT_EQ(::chmod(d.c_str(), 0777), 0);
  return d;
}

}  // namespace

TEST(HostileImageTest, AnImageSomebodyElseOwnsIsRefusedUntilTrusted) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  rt.checkpoint(pid);
  ASSERT_EQ(run_command({"chown", "-R", "65534:65534", rt.images()}).status, 0);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("owned by uid 65534"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ferry image trust"), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(process_alive(pid));
  CmdResult show = ferry({"image", "show", rt.images()});
  EXPECT_EQ(show.status, 0) << show.err;
  EXPECT_NE(show.out.find("NOT TRUSTED"), std::string::npos) << show.out;
  // In place only in a directory of root's; a copy otherwise.
  CmdResult in_place = ferry({"image", "trust", rt.images(), "--yes"});
  EXPECT_NE(in_place.status, 0);
  EXPECT_NE(in_place.err.find("owned by uid 65534"), std::string::npos) << in_place.err;
  std::string trusted = rt.dir / "trusted";
  CmdResult t = ferry({"image", "trust", rt.images(), "--into", trusted, "--yes"});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find("credentials uid"), std::string::npos) << "trust shows what it signs";
  CmdResult r2 = ferry({"restore", "--images", trusted, "--detach"});
  ASSERT_EQ(r2.status, 0) << r2.err;
  pid_t restored = static_cast<pid_t>(std::atoi(r2.out.c_str()));
  rt.guard.add(restored);
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
}

TEST(HostileImageTest, ForgedCredentialsNeverRunAsRoot) {
  RoundTrip rt;
  std::string d = make_user_dir(rt, "u");
  SpawnOptions o;
  o.uid = kUser;
  pid_t pid = rt.start_target("t_memory", {d}, o);
  rt.checkpoint(pid);
  std::string core_path = rt.images() + "/core.img";
  std::string core = read_file(core_path);
  struct stat pst;
  ASSERT_EQ(::stat((rt.images() + "/pages.img").c_str(), &pst), 0);
  image::Image img = image::parse_core(core, static_cast<uint64_t>(pst.st_size),
                                       image::host_image_key());
  ASSERT_EQ(img.creds().uids(0), static_cast<uint32_t>(kUser));
  auto make_root = [](image::Image& i) {
    for (int k = 0; k < 4; k++) i.mutable_creds()->set_uids(k, 0);
    i.mutable_creds()->set_cap_effective((1ull << 41) - 1);
    i.mutable_creds()->set_cap_permitted((1ull << 41) - 1);
  };
  // Root with every capability, signed by somebody without the host's key.
  image::Image forged = img;
  make_root(forged);
  write_file(core_path, image::serialize_core(forged, image::derive_image_key("mallory", 7)));
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("signature"), std::string::npos) << r.err;
  EXPECT_FALSE(process_alive(pid)) << "something runs at the image's pid";
  // uid -1 ("unchanged" to setresuid), even with a valid signature: refused.
  image::Image minus_one = img;
  minus_one.mutable_creds()->set_uids(1, 4294967295u);
  write_file(core_path, image::serialize_core(minus_one, image::host_image_key()));
  r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("4294967295"), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(process_alive(pid));
}

TEST(HostileImageTest, ACheckpointRefusesADirectoryAnotherUserControls) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  std::string theirs = rt.dir / "theirs", open = rt.dir / "open";
  ASSERT_EQ(::mkdir(theirs.c_str(), 0700), 0);
  ASSERT_EQ(::chown(theirs.c_str(), kUser, kUser), 0);
  CmdResult r = ferry({"checkpoint", std::to_string(pid), "--images", theirs});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("owned by uid 1001"), std::string::npos) << r.err;
  ASSERT_EQ(::mkdir(open.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(open.c_str(), 01777), 0);
  r = ferry({"checkpoint", std::to_string(pid), "--images", open});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("writable by others"), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  struct stat st;
  ASSERT_EQ(::stat(open.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u) << "the directory's mode was changed";
  EXPECT_EQ(read_file(theirs + "/core.img"), "");
  // Untouched: it still runs and its state is intact.
  ASSERT_TRUE(process_alive(pid));
  EXPECT_EQ(rt.verify(pid), 0) << rt.target_errors();
}

TEST(HostileImageTest, AFifoInPlaceOfAnOpenFileIsRefusedNotWaitedOn) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_paths", {"open", rt.dir.path()});
  rt.checkpoint(pid);
  std::string data = rt.dir / "data";
  ASSERT_EQ(::unlink(data.c_str()), 0);
  ASSERT_EQ(::mkfifo(data.c_str(), 0644), 0);
  CmdResult v = ferry({"image", "verify", rt.images()}, 20000);
  EXPECT_NE(v.status, 0);
  EXPECT_NE(v.err.find("is now a FIFO"), std::string::npos) << v.err;
  auto start = std::chrono::steady_clock::now();
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"}, 20000);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("is now a FIFO"), std::string::npos) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(process_alive(pid));
}

TEST(HostileImageTest, APathSwappedForALinkToRootsFileIsNotOpenedForTheUser) {
  RoundTrip rt;
  std::string d = make_user_dir(rt, "u");
  SpawnOptions o;
  o.uid = kUser;
  pid_t pid = rt.start_target("t_paths", {"open", d}, o);
  rt.checkpoint(pid);
  std::string secret = rt.dir / "secret";
  write_file(secret, "root's secret\n");
  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  std::string data = d + "/data";
  ASSERT_EQ(::unlink(data.c_str()), 0);
  ASSERT_EQ(::symlink(secret.c_str(), data.c_str()), 0);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("uid 1001"), std::string::npos) << r.err;
  EXPECT_FALSE(process_alive(pid));
}

TEST(HostileImageTest, UnlinkedFilesComeBackWithoutSetIdBits) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_paths", {"ghost", rt.dir.path()});
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
}

TEST(HostileImageTest, ImageShowEscapesWhatTheProcessCalledItself) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_static", {"\x1b]0;owned\x07", "two\nlines"});
  rt.checkpoint(pid);
  CmdResult show = ferry({"image", "show", rt.images()});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out.find('\x1b'), std::string::npos) << "a raw escape reached the terminal";
  EXPECT_NE(show.out.find("\\x1b]0;owned\\x07 two\\nlines"), std::string::npos) << show.out;
}

// Issue 8, item 2, end to end: restores while another writer changes pages.img. Each either
// fails on a tag or restores a process whose memory is exactly its own.
TEST(HostileImageTest, PagesChangedDuringARestoreNeverRunUnverified) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  rt.checkpoint(pid);
  int refused = 0, intact = 0;
  for (int trial = 0; trial < 10; trial++) {
    std::string copy = rt.dir / ("copy" + std::to_string(trial));
    ASSERT_EQ(run_command({"cp", "-a", rt.images(), copy}).status, 0);
    std::string pages = copy + "/pages.img";
    struct stat st;
    ASSERT_EQ(::stat(pages.c_str(), &st), 0);
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      int fd = ::open(pages.c_str(), O_WRONLY);
      std::mt19937_64 rng(static_cast<uint64_t>(trial));
      while (!stop) {
        char junk = static_cast<char>(rng());
        ::pwrite(fd, &junk, 1, static_cast<off_t>(4096 + rng() % (st.st_size - 4096)));
      }
      ::close(fd);
    });
    CmdResult r = ferry({"restore", "--images", copy, "--detach"});
    stop = true;
    writer.join();
    if (r.status != 0) {
      EXPECT_NE(r.err.find("does not match its tag"), std::string::npos) << r.err;
      refused++;
      continue;
    }
    pid_t restored = static_cast<pid_t>(std::atoi(r.out.c_str()));
    rt.guard.add(restored);
    EXPECT_EQ(rt.verify(restored), 0) << "trial " << trial << ": " << rt.target_errors();
    intact++;
  }
  EXPECT_EQ(refused + intact, 10);
}

}  // namespace ferry::test
