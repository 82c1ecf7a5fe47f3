// A migrated task's control groups: relative to the daemons' own where it was below the
// source's, the same path anywhere else.
#include <gtest/gtest.h>

#include "cr/resources/cgroups.h"

namespace ferry::cr {

TEST(CgroupsTest, BelowTheSourceDaemonsGroupMeansBelowTheDestinations) {
  CgroupRebase r{{"0::/nodes/a", "4:memory:/m/a"}, {"0::/nodes/b", "7:memory:/m/b"}};
  EXPECT_EQ(rebase_cgroup_line("0::/nodes/a", r), "0::/nodes/b");
  EXPECT_EQ(rebase_cgroup_line("0::/nodes/a/job/1", r), "0::/nodes/b/job/1");
  EXPECT_EQ(rebase_cgroup_line("4:memory:/m/a/x", r), "4:memory:/m/b/x");
}

TEST(CgroupsTest, AnyOtherGroupKeepsItsPath) {
  CgroupRebase r{{"0::/nodes/a"}, {"0::/nodes/b"}};
  EXPECT_EQ(rebase_cgroup_line("0::/nodes/ab", r), "0::/nodes/ab");  // a prefix, not a parent
  EXPECT_EQ(rebase_cgroup_line("0::/other", r), "0::/other");
  EXPECT_EQ(rebase_cgroup_line("4:memory:/m/a", r), "4:memory:/m/a");  // no such hierarchy there
}

TEST(CgroupsTest, FromAndToTheRoot) {
  CgroupRebase to_sub{{"0::/"}, {"0::/b"}}, to_root{{"0::/a"}, {"0::/"}};
  EXPECT_EQ(rebase_cgroup_line("0::/x/y", to_sub), "0::/b/x/y");
  EXPECT_EQ(rebase_cgroup_line("0::/", to_sub), "0::/b");
  EXPECT_EQ(rebase_cgroup_line("0::/a/x", to_root), "0::/x");
  EXPECT_EQ(rebase_cgroup_line("0::/a", to_root), "0::/");
}

}  // namespace ferry::cr
