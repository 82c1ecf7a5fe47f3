// The task's end of a channel of messages (mode: message): one end of a SOCK_SEQPACKET
// socketpair whose other end is the node's, so that every write of the task is one message and
// every read takes one. The pair is one-way like a pipe (the task cannot read from a writer's end
// nor write into a reader's), and the task's end is a descriptor ferry provided
// (cr/provided.h): a dump records it as such and the destination gives the task a new one.
//
// An empty message and the end of the stream both read as 0 bytes; the node's side of a
// writer's pair receives the sender's credentials with every message (SO_PASSCRED), which the
// end does not have: that tells them apart.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "node/provided_pair.h"
#include "util/fd.h"

namespace ferry::node {

using MessagePair = ProvidedPair;
// What the node's side of a reader's pair may have sent that the task has not read yet.
constexpr int kReaderSocketBytes = 1 << 20;
// `writer`: the task writes into the channel through it.
MessagePair make_message_pair(bool writer);

// The node's side of a writer's pair. What comes next: a message of `size` bytes (not taken
// yet), the end of the stream, or nothing for now.
struct NextMessage {
  enum Kind { kMessage, kEnd, kNone } kind = kNone;
  size_t size = 0;
};
NextMessage peek_message(int fd);
// Takes the next message, of `size` bytes as peek_message() said.
std::string take_message(int fd, size_t size);

// The node's side of a reader's pair: one message in, whole.
enum class SendResult { kSent, kFull, kGone };
SendResult send_message(int fd, std::string_view data);

// The messages waiting in the task's end of a reader's pair (the task is frozen), taken out of
// it: the fd of `pid` that is the socket `task_inode` is borrowed (any number the task moved it
// to). None when the task no longer holds it.
std::vector<std::string> take_unread_messages(pid_t pid, uint64_t task_inode);
// Whether any wait there, none taken.
bool has_unread_messages(pid_t pid, uint64_t task_inode);

// Messages the frozen task of `pid` had sent through the task's end of a writer's pair (the socket
// `task_inode`), taken out of the node's side, sent again from the task's end in their order:
// how many it took (fewer when its buffer is full; none when the task no longer holds it).
size_t send_again_from_task_end(pid_t pid, uint64_t task_inode,
                                const std::vector<std::string>& messages);

}  // namespace ferry::node
