// The pieces of a snapshot that need no cluster (issue 12): the consistency check, a channel's
// recorded state on disk (and a corrupted one), the store's layout and its removal.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "snapshot/channel_state.h"
#include "snapshot/consistency.h"
#include "snapshot/store.h"
#include "support/harness.h"
#include "util/error.h"

namespace ferry::test {
namespace {

rpc::SnapshotChannelReport channel(uint64_t written, uint64_t read, uint64_t recorded) {
  rpc::SnapshotChannelReport c;
  c.set_from("a:1");
  c.set_to("b:0");
  c.set_writer_cut(true);
  c.set_reader_cut(true);
  c.set_recorded(true);
  c.set_written_bytes(written);
  c.set_read_bytes(read);
  c.set_recorded_bytes(recorded);
  return c;
}

TEST(SnapshotCheckTest, AChannelAddsUpOnlyWhenWrittenIsReadPlusRecorded) {
  rpc::SnapshotReport r;
  *r.add_channels() = channel(100, 60, 40);
  *r.add_channels() = channel(7, 7, 0);
  EXPECT_EQ(snapshot::check_consistency(r), "");
  EXPECT_TRUE(r.consistent());
  r.mutable_channels(1)->set_recorded_bytes(1);  // one byte too many
  std::string why = snapshot::check_consistency(r);
  EXPECT_FALSE(r.consistent());
  EXPECT_TRUE(r.channels(0).consistent());
  EXPECT_FALSE(r.channels(1).consistent());
  EXPECT_EQ(why, "channel a:1 -> b:0: 7 bytes written, but 7 read and 1 recorded");
}

TEST(SnapshotCheckTest, MessagesCountTooAndAnEndNotRecordedIsNotConsistent) {
  rpc::SnapshotReport r;
  rpc::SnapshotChannelReport c = channel(24, 8, 16);
  c.set_messages(true);
  c.set_written_messages(3);
  c.set_read_messages(1);
  c.set_recorded_messages(1);  // 16 bytes in one message where two were due
  *r.add_channels() = c;
  EXPECT_NE(snapshot::check_consistency(r).find("3 messages written"), std::string::npos);
  r.mutable_channels(0)->set_recorded_messages(2);
  EXPECT_EQ(snapshot::check_consistency(r), "");
  r.mutable_channels(0)->set_reader_cut(false);
  EXPECT_NE(snapshot::check_consistency(r).find("reader was not recorded"), std::string::npos);
  r.mutable_channels(0)->set_reader_cut(true);
  r.mutable_channels(0)->set_recorded(false);
  EXPECT_NE(snapshot::check_consistency(r).find("no marker"), std::string::npos);
}

TEST(SnapshotStateTest, ARecordedStateReadsBackItemByItemAndACutOneIsRefused) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0700);
  std::vector<std::string> items{"", std::string("a\0b", 3), std::string(70000, 'x')};
  std::string path = dir / "0.state";
  snapshot::write_channel_state(path, items);
  EXPECT_EQ(snapshot::read_channel_state(path), items);
  std::string bytes = read_file(path);
  write_file(path, bytes.substr(0, bytes.size() - 1));
  ::chmod(path.c_str(), 0600);
  EXPECT_THROW(snapshot::read_channel_state(path), Error);
}

TEST(SnapshotStoreTest, ReportsAreKeptByIdAndRemovedWithEverythingOfTheirs) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0700);
  snapshot::SnapshotStore store(dir / "snapshots");
  EXPECT_FALSE(snapshot::SnapshotStore::valid_id("../etc"));
  EXPECT_THROW(store.task_dir("../../x", "t"), Error);
  rpc::SnapshotReport r;
  r.set_id("00112233aabbccdd");
  r.set_job("node1.j1");
  store.save_report(r);
  std::string task = store.task_dir(r.id(), "gen");
  write_file(task + "/core.img", "x");
  snapshot::write_channel_state(store.channel_path(r.id(), 3), {"abc"});
  ASSERT_EQ(store.reports().size(), 1u);
  EXPECT_EQ(store.reports()[0].job(), "node1.j1");
  EXPECT_TRUE(store.remove(r.id()));
  EXPECT_TRUE(store.reports().empty());
  EXPECT_FALSE(store.remove(r.id()));
  struct stat st;
  EXPECT_NE(::stat((dir / "snapshots/00112233aabbccdd").c_str(), &st), 0);
}

}  // namespace
}  // namespace ferry::test
