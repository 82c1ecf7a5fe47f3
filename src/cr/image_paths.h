// Opening the files an image names, on behalf of the process being restored.
//
// The image is authenticated, but the file system is not: between checkpoint and restore a path
// may have come to lead somewhere else (a symlink to another user's file, a FIFO, a device). So
// every path is opened
//  - first with O_PATH, which has no side effect (a FIFO does not block, a device is not
//    touched), and its type checked against what the image says it was;
//  - then for real, through /proc/self/fd. When it is provably the very object the process held
//    (same device and inode, same boot of the same kernel), ferry opens it with its own rights:
//    the process gets back exactly what it had, also a file it opened while privileged and kept
//    after dropping privileges (a root shell's redirection). Anything else is opened with the
//    file-system credentials of the process being restored (its fsuid, fsgid and groups, on this
//    thread only), so that a path changed since the checkpoint never gives the process a file it
//    could not open itself.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

// While alive, the calling thread's file-system credentials are the image's (fsuid, fsgid,
// supplementary groups). Nothing changes for a process whose fsuid is ferry's own (root).
class ActingAs {
 public:
  explicit ActingAs(const image::Credentials& creds);
  ~ActingAs();
  ActingAs(const ActingAs&) = delete;
  ActingAs& operator=(const ActingAs&) = delete;

 private:
  bool active_ = false;
  std::vector<gid_t> saved_groups_;
  uid_t saved_fsuid_ = 0;
  gid_t saved_fsgid_ = 0;
};

// The kinds of file an image names by path.
enum class PathKind { kRegular, kDirectory, kDevice, kFifo };
const char* path_kind_name(PathKind k);
bool is_kind(const struct stat& st, PathKind k);

// Whether `st` is the object the image recorded (compares device and inode, or device numbers).
using SameObject = std::function<bool(const struct stat&)>;
SameObject same_inode(const image::FileIdentity& id);
SameObject same_device(uint32_t major, uint32_t minor);
// The image was taken during this boot of this kernel.
bool taken_this_boot(const image::Image& img);
// This boot's id (/proc/sys/kernel/random/boot_id).
std::string boot_id();

// Opens `path` as described above, for the process of `img`. `flags` are open(2) flags
// (O_CLOEXEC is added); O_PATH in them returns the O_PATH descriptor itself. `same` (may be
// empty) recognises the object the process held. *st receives what was opened.
UniqueFd open_image_path(const image::Image& img, const std::string& path, int flags,
                         PathKind kind, const std::string& what, const SameObject& same = {},
                         struct stat* st = nullptr);

// Without opening anything: every path the image names that is missing or of another kind than
// the image says (ferry image verify). One line per problem.
std::vector<std::string> check_image_paths(const image::Image& img);

}  // namespace ferry::cr
