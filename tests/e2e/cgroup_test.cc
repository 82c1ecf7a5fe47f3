// A restored process goes back into its own control groups, not the restorer's; where its
// group is gone, the restore fails naming it and changes nothing, unless asked to leave the
// process in the restorer's groups.
#include <sys/stat.h>

#include <algorithm>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/roundtrip.h"

namespace ferry::test {
namespace {

// A memory cgroup of the test's own (v1 when the memory controller is mounted there, else v2).
std::string make_group(const std::string& name) {
  for (const char* root : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    std::string dir = std::string(root) + "/" + name;
    if (::access((std::string(root) + "/cgroup.procs").c_str(), W_OK) == 0 &&
        ::mkdir(dir.c_str(), 0755) == 0)
      return dir;
  }
  return "";
}

std::string line_of(pid_t pid, const std::string& group) {
  for (auto& line : {read_file("/proc/" + std::to_string(pid) + "/cgroup")})
    if (line.find(group) != std::string::npos) return group;
  return "";
}

}  // namespace

TEST(CgroupTest, ARestoredProcessGoesBackIntoItsOwnGroup) {
  std::string name = "ferry-test-" + std::to_string(::getpid());
  std::string dir = make_group(name);
  if (dir.empty()) GTEST_SKIP() << "no cgroup hierarchy to make a group in";
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  write_file(dir + "/cgroup.procs", std::to_string(pid));
  ASSERT_EQ(line_of(pid, "/" + name), "/" + name);
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  EXPECT_EQ(line_of(restored, "/" + name), "/" + name) << "restored in the restorer's group";
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
  // Gone: the restore fails, naming the group, and nothing runs.
  ASSERT_EQ(::rmdir(dir.c_str()), 0);
  CmdResult r = ferry({"restore", "--images", rt.images(), "--detach"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("control group /" + name), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // Asked for: it runs in the restorer's groups, and says so.
  r = ferry({"restore", "--images", rt.images(), "--detach", "--cgroups", "restorer"});
  ASSERT_EQ(r.status, 0) << r.err;
  pid_t again = static_cast<pid_t>(std::atoi(r.out.c_str()));
  rt.guard.add(again);
  EXPECT_NE(r.err.find("restorer's control groups"), std::string::npos) << r.err;
  EXPECT_EQ(line_of(again, "/" + name), "");
  EXPECT_EQ(rt.verify(again), 0) << rt.target_errors();
}

}  // namespace ferry::test
