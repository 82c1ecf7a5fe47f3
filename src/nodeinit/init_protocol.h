// What ferry-init and the ferryd it supervises say to each other, on a SOCK_SEQPACKET socket
// pair (ferryd's end is the descriptor named by $FERRY_INIT_FD). One message per packet, text,
// words separated by single spaces; names (task ids) never contain spaces.
//
// ferry-init -> ferryd, right after ferryd starts:
//   hello INIT_ID STARTS          this init's random id and how many ferryds it has started
//   kept NAME CONSUMED   + fd     a descriptor kept for ferryd (a task's output pipe, read end),
//                                 and how many bytes of it have been consumed so far
//   exit PID START STATUS         a process ended while orphaned (its ferryd was gone): pid, start
//                                 time (clock ticks after boot, /proc/PID/stat field 22), and
//                                 its wait status
//   ready                         the end of what was kept
// and at any time later: `exit ...` (an orphan ended), `consumed NAME TOTAL` (reply to consume).
//
// ferryd -> ferry-init:
//   keep NAME OFFSET     + fd     keep this descriptor (its consumed count starts at OFFSET)
//   drop NAME                     forget it (closes the init's copy)
//   consume NAME N                read and discard N bytes of it; answered with `consumed`
//   forget PID START              the exit of that process has been taken care of
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace ferry::init {

constexpr const char* kFdEnv = "FERRY_INIT_FD";
constexpr size_t kMaxMessage = 512;

// One message, with a descriptor when fd >= 0. Returns false when the other side is gone.
inline bool send_message(int sock, const std::string& msg, int fd = -1) {
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0;
}

// One message into *msg, and the descriptor that came with it into *fd (-1 for none; it is
// close-on-exec). Returns false when the other side is gone.
inline bool receive_message(int sock, std::string* msg, int* fd) {
  char buf[kMaxMessage];
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  *fd = -1;
  if (n <= 0) return false;
  msg->assign(buf, static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return true;
}

}  // namespace ferry::init
