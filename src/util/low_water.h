// A TCP socket's low-water mark for reads (SO_RCVLOWAT), for the time one large frame is read.
// Without it the kernel wakes a reader blocked for N bytes for every segment that comes, a
// MSG_WAITALL read too: about 16 wakeups for a MiB over loopback or a veth pair, each costing on a
// virtual machine as much as copying tens of KiB. With it the reader sleeps until the whole
// frame is there (the kernel caps the mark at half the receive buffer, and still wakes the
// reader at the end of the stream, a shutdown, or a receive window too small to take more).
// The kernel wakes a sleeping reader only once the bytes queued reach the mark, whatever the
// reader asked for: once part of the frame is read, the mark must come down to what is left
// (lower_to()), or the last piece never wakes it.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>

namespace ferry {

class LowWater {
 public:
  // Nothing is set for fewer than `from` bytes (two system calls are not worth it there).
  LowWater(int fd, size_t bytes, size_t from = 0) : fd_(bytes >= from && bytes > 1 ? fd : -1) {
    int mark = bytes > (1u << 30) ? (1 << 30) : static_cast<int>(bytes);
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof mark);
  }
  // What is still to come, once part of it was read.
  void lower_to(size_t bytes) {
    int mark = bytes > 1 ? static_cast<int>(std::min<size_t>(bytes, 1u << 30)) : 1;
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof mark);
  }
  ~LowWater() {
    int one = 1;  // (the default: a header, an acknowledgement or a poll is woken at once)
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  }
  LowWater(const LowWater&) = delete;
  LowWater& operator=(const LowWater&) = delete;

 private:
  const int fd_;
};

}  // namespace ferry
