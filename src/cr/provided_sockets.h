// The sockets ferry itself gives the processes it runs (a task's control socket, whose other end
// is ferryd's): a dump records such a descriptor as "provided", not as a socket to an outside
// peer (which it would refuse), and the node where the process is restored gives it a new one.
// Known by the socket's inode, never by an fd number (the process may move or reuse numbers).
#pragma once

#include <cstdint>

namespace ferry::cr {

void add_provided_socket(uint64_t inode);
void remove_provided_socket(uint64_t inode);
bool provided_socket(uint64_t inode);

}  // namespace ferry::cr
