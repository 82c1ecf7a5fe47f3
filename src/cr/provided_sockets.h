// The sockets ferry itself gives the processes it runs (a task's control socket, the end of a
// channel of messages; their other ends are ferryd's): a dump records such a descriptor as
// "provided", with what it is, not as a socket to an outside peer (which it would refuse), and
// the node where the process is restored gives it a new one. Known by the socket's inode, never
// by an fd number (the process may move or reuse numbers).
#pragma once

#include <cstdint>
#include <string>

namespace ferry::cr {

inline constexpr const char* kProvidedControl = "control";
inline constexpr const char* kProvidedChannel = "channel";

void add_provided_socket(uint64_t inode, const std::string& what);
void remove_provided_socket(uint64_t inode);
// What the socket is ("" when ferry did not provide it).
std::string provided_socket(uint64_t inode);

}  // namespace ferry::cr
