// Sockets whose whole state is in the process (issue 9): UDP, listening TCP, Unix sockets whose
// peers are all the process's own, and the process's pseudo-terminal pairs. Shared between the
// socket kinds; the fd table calls the functions declared in file_kinds.h.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

// The sockets of a process: inode -> its fd numbers.
struct ProcessSockets {
  std::map<uint64_t, std::vector<int>> by_ino;
  bool has(uint64_t ino) const { return by_ino.count(ino) != 0; }
};
ProcessSockets scan_sockets(pid_t pid);
uint64_t socket_ino(const std::string& link);  // "socket:[123]" -> 123

// A copy of fd `num` of `pid` (pidfd_getfd): the very socket, to ask it about itself.
UniqueFd borrow_fd(pid_t pid, int num);

// "127.0.0.1:8080", "[::1]:53", "/run/x.sock", "@abstract" for messages and checks.
std::string address_text(const std::string& sockaddr_bytes);
std::string socket_name(int fd);  // getsockname() as bytes ("" when unbound)
std::string peer_name(int fd);    // getpeername() as bytes ("" when not connected)

// For a migration: the addresses the process's sockets are bound to that a destination must
// have (not the wildcard; Unix paths too), as sockaddr bytes; and, at the destination, why one
// of them cannot be had here ("" when it can).
std::vector<std::string> bound_addresses(pid_t pid);
std::string address_unavailable_here(const std::string& sockaddr_bytes);

// Options that differ from those of a fresh socket of the same kind (socket_options.cc).
void dump_socket_options(int fd, int family, int type, int protocol,
                         google::protobuf::RepeatedPtrField<image::SocketOption>* out);
// Before bind (some options only work then).
void restore_socket_options(int fd,
                            const google::protobuf::RepeatedPtrField<image::SocketOption>& options);

// Unix (sockets_unix.cc), inet (sockets_inet.cc).
std::string unsupported_unix_socket(pid_t pid, int num, int fd, const ProcessSockets& ps);
std::string unsupported_inet_socket(pid_t pid, int num, int fd);
void dump_unix_socket(int fd, image::Socket* s);
void dump_unix_queue(pid_t pid, int fd, image::Socket* s,
                     const std::map<int, uint64_t>& file_of_fd);
void dump_inet_socket(pid_t pid, int fd, image::Socket* s);
UniqueFd open_inet_socket(const image::Socket& s);

}  // namespace ferry::cr
