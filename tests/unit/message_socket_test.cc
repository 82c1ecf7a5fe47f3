// The task's end of a reader's channel of messages holds about what a reader's pipe holds in a
// channel of bytes (1 MiB), whatever the channel's capacity: what it holds is what a snapshot's
// cut takes out of the stopped task's socket and puts back before the task runs on (with the
// channel's capacity there, a cut copied up to 8 MiB while the task was stopped: 5-18 ms of
// pause). A message larger than that still goes in whole.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>

#include "node/channels/message_socket.h"

namespace ferry::node {
namespace {

TEST(MessageSocketTest, AReadersSocketHoldsAboutAsMuchAsAReadersPipe) {
  MessagePair pair = make_message_pair(false);
  const std::string message(8 << 10, 'm');
  size_t held = 0;
  for (int i = 0; i < 10000; i++) {
    SendResult r = send_message(pair.node_side.get(), message);
    ASSERT_NE(r, SendResult::kGone);
    if (r == SendResult::kFull) break;
    held += message.size();
  }
  EXPECT_LE(held, static_cast<size_t>(kReaderSocketBytes));
  EXPECT_GE(held, static_cast<size_t>(kReaderSocketBytes) / 2);
}

TEST(MessageSocketTest, AMessageLargerThanTheSocketHoldsGoesInWhole) {
  MessagePair pair = make_message_pair(false);
  std::string large(3 * kReaderSocketBytes, 'L');
  large.back() = 'E';
  ASSERT_EQ(send_message(pair.node_side.get(), large), SendResult::kSent);
  std::string got(large.size() + 1, '\0');
  ssize_t n = ::recv(pair.task_side.get(), got.data(), got.size(), MSG_DONTWAIT);
  ASSERT_EQ(n, static_cast<ssize_t>(large.size()));
  got.resize(static_cast<size_t>(n));
  EXPECT_EQ(got, large);
}

}  // namespace
}  // namespace ferry::node
