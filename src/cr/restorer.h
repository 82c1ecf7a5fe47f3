// What every resource's restore() gets: the helper process being turned into the image's process,
// the image, a staging area inside the helper for syscall arguments, and a way to hand file
// descriptors from ferry to the helper.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cr/ptrace/tracee.h"
#include "image.pb.h"
#include "image/image_files.h"
#include "util/fd.h"

namespace ferry::cr {

class Restorer {
 public:
  Restorer(Tracee& tracee, const image::Image& img);

  Tracee& tracee() { return tracee_; }
  pid_t pid() const { return tracee_.pid(); }
  const image::Image& image() const { return *img_; }
  // The whole description, once the layout built from an earlier one turned out unchanged.
  void set_image(const image::Image& img) { img_ = &img; }

  // Staging: a scratch mapping inside the helper, placed where the image has no memory.
  void place_scratch();
  uint64_t scratch_addr() const { return scratch_ ? scratch_->addr() : 0; }
  static constexpr size_t kScratchSize = 256 * 1024;
  // Copies data into the staging area and returns its address in the helper. reset_stage()
  // makes the whole area free again; call it at the start of each operation.
  uint64_t stage(const void* data, size_t len);
  uint64_t stage_string(const std::string& s) { return stage(s.c_str(), s.size() + 1); }
  void reset_stage() { stage_used_ = 0; }
  void remove_scratch();

  // Gives the helper a descriptor referring to the same open file as ferry's `local_fd`.
  // Returns its number in the helper.
  int send_fd(int local_fd);
  // Closes every descriptor that send_fd() opened only for the restore's own use.
  // file_table_in_place: the image's files now stand where placeholders were (keep those).
  void close_temporary_fds(bool file_table_in_place = true);
  void forget_temporary_fd(int remote_fd);

  // Reserves an address range of `len` bytes that no memory region of the image (nor another
  // reservation) touches, for the restore's own temporary mappings.
  uint64_t reserve_gap(uint64_t len);
  void release_gap(uint64_t addr);

  // Objects built during the restore that several resources share, by image id.
  std::map<uint64_t, UniqueFd> shmem_fds;  // memfd objects (ferry's descriptors)
  std::map<uint64_t, UniqueFd> ghost_fds;  // recreated unlinked files (ferry's descriptors)
  std::vector<std::string> notes;          // things the user should hear about
  std::map<int, int> external_fds;         // image fd number -> ferry's fd standing in for it

 private:
  int above_image_fds(int fd);
  int image_fd_floor() const;
  void open_remote_pidfd();

  Tracee& tracee_;
  const image::Image* img_;
  std::optional<RemoteMapping> scratch_;
  size_t stage_used_ = 0;
  int remote_pidfd_ = -1;
  std::vector<int> temporary_fds_;
  // Numbers below the image's highest fd held by copies of the pidfd, so that every descriptor
  // received lands above them at once; the file table restore puts the image's files there.
  std::vector<int> placeholders_;
  std::map<uint64_t, uint64_t> reserved_;  // start -> end of our temporary ranges
};

}  // namespace ferry::cr
