#include "node/channels/wake_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "util/error.h"

namespace ferry::node {

WakeFd::WakeFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_) fail_errno(errno, "eventfd");
}

void WakeFd::notify() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t one = 1;
  if (fd_) (void)::write(fd_.get(), &one, sizeof one);
}

void WakeFd::drain() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t v;
  if (fd_) (void)::read(fd_.get(), &v, sizeof v);
}

void WakeFd::close() {
  std::lock_guard<std::mutex> lock(mu_);
  fd_.reset();
}

}  // namespace ferry::node
