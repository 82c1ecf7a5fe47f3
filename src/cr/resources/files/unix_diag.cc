#include "cr/resources/files/unix_diag.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "util/error.h"
#include "util/fd.h"

namespace ferry::cr {

namespace {

// The attributes of the answer (what udiag_show asked for) into `out`.
void read_attributes(const nlmsghdr* h, const unix_diag_msg* m, UnixSocketInfo& out) {
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<const rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    const char* data = static_cast<const char*>(RTA_DATA(a));
    size_t size = RTA_PAYLOAD(a);
    switch (a->rta_type) {
      case UNIX_DIAG_NAME:
        out.name.assign(data, size);
        break;
      case UNIX_DIAG_VFS:
        if (size >= sizeof(unix_diag_vfs)) {
          unix_diag_vfs v;
          std::memcpy(&v, data, sizeof v);
          out.has_file = true;
          out.file_dev = v.udiag_vfs_dev;
          out.file_ino = v.udiag_vfs_ino;
        }
        break;
      case UNIX_DIAG_PEER:
        if (size >= sizeof(uint32_t)) {
          uint32_t peer;
          std::memcpy(&peer, data, sizeof peer);
          out.peer = peer;
        }
        break;
      case UNIX_DIAG_ICONS:
        out.waiting = static_cast<uint32_t>(size / sizeof(uint32_t));
        break;
      case UNIX_DIAG_RQLEN:
        if (size >= sizeof(unix_diag_rqlen) && out.state == 10 /* TCP_LISTEN */) {
          unix_diag_rqlen q;
          std::memcpy(&q, data, sizeof q);
          out.backlog = q.udiag_wqueue;
        }
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (size >= 1) out.shutdown = static_cast<uint8_t>(data[0]);
        break;
      default:
        break;
    }
  }
}

}  // namespace

std::optional<UnixSocketInfo> unix_socket_info(uint64_t ino) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) fail_errno(errno, "cannot open a sock_diag netlink socket");
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show =
      UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE: by inode only
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(nl.get(), &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(sizeof msg))
    fail_errno(errno, "cannot ask sock_diag about socket {}", ino);
  alignas(nlmsghdr) char buf[32768];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) fail_errno(errno, "cannot read sock_diag's answer about socket {}", ino);
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<unsigned>(n))) fail("malformed sock_diag answer");
  if (h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
    if (e->error == -ENOENT) return std::nullopt;
    fail_errno(-e->error, "sock_diag cannot tell about socket {}", ino);
  }
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) fail("unexpected sock_diag answer");
  auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
  UnixSocketInfo out;
  out.ino = m->udiag_ino;
  out.type = m->udiag_type;
  out.state = m->udiag_state;
  read_attributes(h, m, out);
  return out;
}

}  // namespace ferry::cr
