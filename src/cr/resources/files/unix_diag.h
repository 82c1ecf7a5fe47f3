// What the kernel tells about a Unix socket through NETLINK_SOCK_DIAG (unix_diag): its peer,
// its name and socket file, connections waiting on a listener, its shutdown state. Nothing of
// this is reachable through the socket itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry::cr {

struct UnixSocketInfo {
  uint64_t ino = 0;
  uint8_t type = 0;   // SOCK_STREAM, ...
  uint8_t state = 0;  // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
  uint64_t peer = 0;  // the peer's inode; 0 when none (or when it is gone)
  std::string name;   // sun_path bytes; an abstract name starts with '\0'
  bool has_file = false;
  uint64_t file_dev = 0, file_ino = 0;  // the socket file of a path name
  uint32_t waiting = 0;                 // listener: connections not yet accepted
  uint32_t shutdown = 0;                // 1: receiving shut down, 2: sending
  uint32_t backlog = 0;                 // listener: the backlog listen() was given
};

// The socket with inode `ino`, or nothing when the kernel does not know it (any more).
std::optional<UnixSocketInfo> unix_socket_info(uint64_t ino);

}  // namespace ferry::cr
