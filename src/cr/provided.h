// The descriptors ferry itself gives the processes it runs (a task's control socket, the ends of
// its channels: a socket of messages or a pipe of bytes; their other ends are ferryd's): a dump
// records such a descriptor as "provided", with what it is, not as a socket to an outside peer
// (which it would refuse) or a pipe of the process's own, and the node where the process is
// restored gives it a new one. Known by the inode, never by an fd number (the process may move
// or reuse numbers).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "image.pb.h"

namespace ferry::cr {

inline constexpr const char* kProvidedControl = "control";
inline constexpr const char* kProvidedChannel = "channel";

void add_provided_socket(uint64_t inode, const std::string& what);
// The end of a channel (a socket of messages, or a pipe of bytes) that ferry gave the task at
// `channel_fd`.
void add_provided_channel(uint64_t inode, int channel_fd);
void remove_provided(uint64_t inode);
// What ferry provided with this inode (nullopt when it did not).
std::optional<image::Provided> provided_of(uint64_t inode);

}  // namespace ferry::cr
