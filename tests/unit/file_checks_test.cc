// The destination's file checks: a migrating task's files must be the same files here.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "node/file_checks.h"
#include "support/harness.h"

namespace ferry::test {
namespace {

rpc::FileCheck check_of(const std::string& path, bool executable) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  rpc::FileCheck c;
  c.set_path(path);
  c.set_size(static_cast<uint64_t>(st.st_size));
  c.set_mtime_ns(st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
  if (executable) c.set_content_hash(node::content_hash(path));
  return c;
}

std::string check(const rpc::FileCheck& c) {
  google::protobuf::RepeatedPtrField<rpc::FileCheck> list;
  *list.Add() = c;
  return node::check_files(list);
}

TEST(FileChecksTest, TheSameFilePasses) {
  TempDir tmp;
  write_file(tmp / "lib.so", "original content");
  EXPECT_EQ(check(check_of(tmp / "lib.so", true)), "");
}

TEST(FileChecksTest, AMissingFileIsNamed) {
  TempDir tmp;
  write_file(tmp / "data", "x");
  rpc::FileCheck c = check_of(tmp / "data", false);
  ::unlink((tmp / "data").c_str());
  EXPECT_EQ(check(c), "file " + (tmp / "data") + " is missing here");
}

TEST(FileChecksTest, ADifferentSizeIsRefused) {
  TempDir tmp;
  write_file(tmp / "data", "short");
  rpc::FileCheck c = check_of(tmp / "data", false);
  write_file(tmp / "data", "a longer text");
  EXPECT_NE(check(c).find("differs here (size or modification time)"), std::string::npos);
}

// Same size, mtime set back by hand: only the content hash can tell, and the hash cache must not
// hide the change.
TEST(FileChecksTest, ARewrittenExecutableWithItsOldTimesIsRefused) {
  TempDir tmp;
  std::string path = tmp / "prog";
  write_file(path, "AAAAAAAA");
  rpc::FileCheck c = check_of(path, true);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  write_file(path, "BBBBBBBB");
  timespec times[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  EXPECT_EQ(check(c), "file " + path + " differs here (content)");
}

TEST(FileChecksTest, OpenFilesOnlyNeedToExist) {
  TempDir tmp;
  write_file(tmp / "log", "grows");
  rpc::FileCheck c;
  c.set_path(tmp / "log");
  c.set_size(UINT64_MAX);
  write_file(tmp / "log", "grows while the task runs");
  EXPECT_EQ(check(c), "");
}

TEST(FileChecksTest, TheTaskListsItsExecutableWithAHash) {
  auto checks = node::file_checks(::getpid());
  std::string self = std::string(realpath("/proc/self/exe", nullptr) ?: "");
  bool found = false;
  for (auto& c : checks)
    if (c.path() == self) {
      found = true;
      EXPECT_NE(c.content_hash(), 0u);
      EXPECT_EQ(c.content_hash(), node::content_hash(self));
    }
  EXPECT_TRUE(found) << self;
}

}  // namespace
}  // namespace ferry::test
