// What ferry provided a task (cr/provided.h) is known by inode as long as the task may hold it:
// a channel's pipe and socket are marked with the number that names the end, and forgotten with
// pipes nobody started (a failed restore or migration) or once their task ended.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "cr/provided.h"
#include "node/channels/channel_ends.h"

namespace ferry::node {
namespace {

ChannelEndSpecs two_ends() {
  ChannelEndSpecs specs;
  rpc::ChannelEnd* bytes = specs.Add();
  bytes->set_job("j");
  bytes->set_channel(0);
  bytes->set_fd(1);
  bytes->set_writer(true);
  rpc::ChannelEnd* messages = specs.Add();
  messages->set_job("j");
  messages->set_channel(1);
  messages->set_fd(7);
  messages->set_messages(true);
  return specs;
}

uint64_t inode_of(const UniqueFd& fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd.get(), &st), 0);
  return st.st_ino;
}

TEST(ProvidedTest, AChannelsPipeAndSocketAreMarkedWithTheirNumbersUntilThePipesGo) {
  uint64_t pipe = 0, socket = 0;
  {
    ChannelPipes moved_from = ChannelEnds::make_pipes(two_ends());
    pipe = inode_of(moved_from.task_side.at(1));
    socket = inode_of(moved_from.task_side.at(7));
    ChannelPipes pipes = std::move(moved_from);
    std::optional<image::Provided> p = cr::provided_of(pipe);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->what(), cr::kProvidedChannel);
    EXPECT_EQ(p->channel_fd(), 1);
    std::optional<image::Provided> s = cr::provided_of(socket);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->channel_fd(), 7);
  }
  EXPECT_FALSE(cr::provided_of(pipe));
  EXPECT_FALSE(cr::provided_of(socket));
}

TEST(ProvidedTest, StartedEndsKeepTheMarksUntilTheirTaskEnds) {
  ChannelEnds ends{ChannelLinks{}};
  uint64_t pipe = 0;
  {
    ChannelPipes pipes = ChannelEnds::make_pipes(two_ends());
    pipe = inode_of(pipes.task_side.at(1));
    // (No end is started: what start() takes over is the marks, whatever the specs.)
    ends.start("t1", ChannelEndSpecs{}, pipes);
  }
  EXPECT_TRUE(cr::provided_of(pipe));
  ends.task_ended("t2");
  EXPECT_TRUE(cr::provided_of(pipe));
  ends.task_ended("t1");
  EXPECT_FALSE(cr::provided_of(pipe));
}

}  // namespace
}  // namespace ferry::node
