// Memory regions of every kind survive a checkpoint/restore round trip (target: t_memory).
#include <gtest/gtest.h>

#include "support/roundtrip.h"

namespace ferry::test {

TEST(MemoryTest, EveryRegionKindComesBackIntact) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  auto before = read_file("/proc/" + std::to_string(pid) + "/maps");
  rt.checkpoint(pid);
  pid_t restored = rt.restore();
  ASSERT_EQ(restored, pid) << "the original PID was free and should have been reused";
  EXPECT_EQ(rt.verify(restored), 0) << rt.target_errors();
}

TEST(MemoryTest, NeverTouchedPagesTakeNoSpace) {
  RoundTrip rt;
  pid_t pid = rt.start_target("t_memory", {rt.dir.path()});
  rt.checkpoint(pid);
  // t_memory maps 16 MiB it never touches and 1 MiB it only reads: the image holds its data
  // (8 MiB anon + 4 MiB huge + 2 MiB shared + small regions) but none of those 17 MiB.
  CmdResult show = ferry({"image", "show", rt.images()});
  ASSERT_EQ(show.status, 0) << show.err;
  struct stat st;
  ASSERT_EQ(::stat((rt.images() + "/pages.img").c_str(), &st), 0);
  EXPECT_LT(st.st_size, 16 << 20) << show.out;
  EXPECT_GT(st.st_size, 14 << 20) << show.out;
}

}  // namespace ferry::test
