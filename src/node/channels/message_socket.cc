#include "node/channels/message_socket.h"

#include <sys/socket.h>

#include "cr/resources/files/sockets.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// Every message of a writer's pair has its sender's credentials with it (an end has none).
bool has_credentials(msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) return true;
  return false;
}

// The next message's size without taking it, or -1 (errno set); `*message` says whether it is
// one (else the end).
ssize_t peek_size(int fd, bool* message) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
  *message = n >= 0 && has_credentials(msg);
  return n;
}

void set_int(int fd, int name, int value) {
  if (::setsockopt(fd, SOL_SOCKET, name, &value, sizeof value) != 0)
    fail_errno(errno, "setsockopt on a channel's socket");
}

}  // namespace

MessagePair make_message_pair(bool writer) {
  MessagePair p = make_provided_pair(SOCK_SEQPACKET);
  int task = p.task_side.get(), node = p.node_side.get();
  // One way, as a pipe: the task's reads of a writer's end see the end, its writes into a
  // reader's end fail with EPIPE.
  if (::shutdown(task, writer ? SHUT_RD : SHUT_WR) != 0) fail_errno(errno, "shutdown");
  if (writer) {
    set_int(node, SO_PASSCRED, 1);
  } else {
    // As much as a reader's pipe holds in a channel of bytes: the rest of the channel's capacity
    // waits at the writer's node. What the socket holds is what a snapshot's cut takes out and
    // puts back while the task is stopped (a larger message is made room for when it comes).
    set_int(node, SO_SNDBUFFORCE, kReaderSocketBytes / 2);  // (which the kernel doubles)
  }
  return p;
}

NextMessage peek_message(int fd) {
  bool message = false;
  ssize_t n = peek_size(fd, &message);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return {};
  if (n < 0 || !message) return {NextMessage::kEnd, 0};
  return {NextMessage::kMessage, static_cast<size_t>(n)};
}

std::string take_message(int fd, size_t size) {
  std::string data(size, '\0');
  ssize_t n = ::recv(fd, data.data(), size, MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(size))
    fail_errno(n < 0 ? errno : EPROTO, "cannot take a message of {} bytes from a channel", size);
  return data;
}

SendResult send_message(int fd, std::string_view data) {
  for (int attempt = 0;; attempt++) {
    if (::send(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
      return SendResult::kSent;
    if (errno == EAGAIN || errno == EINTR) return SendResult::kFull;
    // Larger than the send buffer takes whole (a writer may have raised its own): made room for.
    if (errno == EMSGSIZE && attempt == 0 && data.size() < (256u << 20)) {
      set_int(fd, SO_SNDBUFFORCE, static_cast<int>(data.size() + (64 << 10)));
      continue;
    }
    return SendResult::kGone;  // EPIPE: the task closed its end or ended
  }
}

namespace {

// Looks into the task's end of a reader's pair: `look` gets the borrowed socket (nothing when
// the task no longer holds it). Credentials tell a message from the end there too, for a while:
// the task's own setting is put back.
template <typename Look>
void look_into_task_end(pid_t pid, uint64_t task_inode, Look look) {
  cr::ProcessSockets sockets = cr::scan_sockets(pid);
  auto it = sockets.by_ino.find(task_inode);
  if (it == sockets.by_ino.end() || it->second.empty()) return;
  UniqueFd fd = cr::borrow_fd(pid, it->second.front());
  int passcred = 0;
  socklen_t len = sizeof passcred;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &passcred, &len);
  set_int(fd.get(), SO_PASSCRED, 1);
  struct PutBack {
    int fd, value;
    ~PutBack() { ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &value, sizeof value); }
  } put_back{fd.get(), passcred};
  look(fd.get());
}

}  // namespace

std::vector<std::string> take_unread_messages(pid_t pid, uint64_t task_inode) {
  std::vector<std::string> out;
  look_into_task_end(pid, task_inode, [&](int fd) {
    for (;;) {
      NextMessage next = peek_message(fd);
      if (next.kind != NextMessage::kMessage) break;
      out.push_back(take_message(fd, next.size));
    }
  });
  return out;
}

size_t send_again_from_task_end(pid_t pid, uint64_t task_inode,
                                const std::vector<std::string>& messages) {
  cr::ProcessSockets sockets = cr::scan_sockets(pid);
  auto it = sockets.by_ino.find(task_inode);
  if (it == sockets.by_ino.end() || it->second.empty()) return 0;
  UniqueFd fd = cr::borrow_fd(pid, it->second.front());
  size_t sent = 0;
  for (auto& m : messages) {
    if (::send(fd.get(), m.data(), m.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) break;
    sent++;
  }
  return sent;
}

bool has_unread_messages(pid_t pid, uint64_t task_inode) {
  bool any = false;
  look_into_task_end(pid, task_inode,
                     [&](int fd) { any = peek_message(fd).kind == NextMessage::kMessage; });
  return any;
}

}  // namespace ferry::node
