#include "cr/restorer.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "util/address_range.h"
#include "util/error.h"

namespace ferry::cr {

Restorer::Restorer(Tracee& tracee, const image::Image& img) : tracee_(tracee), img_(&img) {}

void Restorer::place_scratch() {
  scratch_.emplace(tracee_, reserve_gap(kScratchSize), kScratchSize);
}

uint64_t Restorer::stage(const void* data, size_t len) {
  if (!scratch_) fail("internal: staging used before the scratch area exists");
  size_t at = (stage_used_ + 15) & ~size_t{15};
  if (at + len > kScratchSize) fail("internal: staging area too small for {} bytes", len);
  tracee_.write_memory(scratch_->addr() + at, data, len);
  stage_used_ = at + len;
  return scratch_->addr() + at;
}

void Restorer::remove_scratch() {
  if (scratch_) scratch_->unmap();
  scratch_.reset();
}

int Restorer::image_fd_floor() const {
  int floor = 0;
  for (auto& f : img_->files().fds()) floor = std::max(floor, f.num() + 1);
  return floor;
}

int Restorer::above_image_fds(int fd) {
  int floor = image_fd_floor();
  if (fd >= floor) return fd;
  int moved = static_cast<int>(
      tracee_.syscall_checked("fcntl(F_DUPFD)", SYS_fcntl, {fd, F_DUPFD_CLOEXEC, floor}));
  tracee_.syscall(SYS_close, {fd});
  return moved;
}

void Restorer::open_remote_pidfd() {
  // Up to this many numbers are held with placeholders (a task with stdin, stdout and stderr has
  // three): one injected call each, against two saved on every descriptor received later.
  constexpr int kMaxPlaceholders = 16;
  int pidfd = static_cast<int>(
      tracee_.syscall_checked("pidfd_open (to receive files)", SYS_pidfd_open, {::getpid(), 0}));
  int floor = image_fd_floor();
  if (pidfd != 0 || floor < 2 || floor > kMaxPlaceholders) {
    remote_pidfd_ = above_image_fds(pidfd);
    temporary_fds_.push_back(remote_pidfd_);
    return;
  }
  // The lowest free numbers first: each copy takes the lowest free one from 1 up.
  placeholders_.push_back(0);
  for (;;) {
    int k = static_cast<int>(
        tracee_.syscall_checked("fcntl(F_DUPFD)", SYS_fcntl, {0, F_DUPFD_CLOEXEC, 1}));
    if (k >= floor) {
      tracee_.syscall(SYS_close, {k});
      break;
    }
    placeholders_.push_back(k);
    if (k == floor - 1) break;
  }
  remote_pidfd_ = static_cast<int>(
      tracee_.syscall_checked("fcntl(F_DUPFD)", SYS_fcntl, {0, F_DUPFD_CLOEXEC, floor}));
  temporary_fds_.push_back(remote_pidfd_);
}

int Restorer::send_fd(int local_fd) {
  if (remote_pidfd_ < 0) open_remote_pidfd();
  // Every received descriptor starts above the image's fd numbers so that it never sits on a
  // number the image needs; the file table restore moves it to its final number.
  return above_image_fds(static_cast<int>(tracee_.syscall_checked(
      "pidfd_getfd (receiving a file)", SYS_pidfd_getfd, {remote_pidfd_, local_fd, 0})));
}

void Restorer::forget_temporary_fd(int remote_fd) {
  temporary_fds_.erase(std::remove(temporary_fds_.begin(), temporary_fds_.end(), remote_fd),
                       temporary_fds_.end());
}

void Restorer::close_temporary_fds(bool file_table_in_place) {
  for (int fd : temporary_fds_) tracee_.syscall(SYS_close, {fd});
  temporary_fds_.clear();
  // The file table is in place: a placeholder still standing holds a number the image has no
  // file at.
  std::set<int> image_numbers;
  if (file_table_in_place)
    for (auto& f : img_->files().fds()) image_numbers.insert(f.num());
  for (int p : placeholders_)
    if (!image_numbers.count(p)) tracee_.syscall(SYS_close, {p});
  placeholders_.clear();
  remote_pidfd_ = -1;
}

uint64_t Restorer::reserve_gap(uint64_t len) {
  // Candidate ranges start above 4 GiB; a guard page on both sides keeps the kernel from merging
  // our temporary mapping with a region of the image.
  constexpr uint64_t kGuard = 4096;
  AddressRanges busy;
  for (auto& v : img_->memory().vmas())
    if (v.kind() != image::Vma::VSYSCALL) busy.push_back({v.start(), v.end()});
  for (auto& [s, e] : reserved_) busy.push_back({s, e});
  std::sort(busy.begin(), busy.end());
  uint64_t candidate = 1ull << 32;
  for (auto& [s, e] : busy) {
    if (e + kGuard <= candidate) continue;
    if (candidate + len + kGuard <= s) break;
    candidate = std::max(candidate, e + kGuard);
  }
  if (candidate + len > img_->memory().task_size()) fail("no free address range of {} bytes", len);
  reserved_[candidate] = candidate + len;
  return candidate;
}

void Restorer::release_gap(uint64_t addr) {
  reserved_.erase(addr);
}

}  // namespace ferry::cr
