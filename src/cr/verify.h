// The last step of every restore: what /proc shows of the rebuilt process, still held, compared
// with the image for every field ferry restores — its memory regions (addresses, protection,
// backing, names, every VmFlags mnemonic), credentials, signal dispositions and mask, umask,
// working directory, and its descriptors (numbers, status flags, offsets). Any difference fails
// the restore (the copy is killed; the image and the original are left as they were): a restore
// is never silently different from what was taken.
#pragma once

#include <sys/types.h>

#include <set>

#include "image.pb.h"

namespace ferry::cr {

struct VerifyOptions {
  bool lazy = false;  // private anonymous memory is registered with a userfaultfd (lazy pages)
  // The fd numbers the caller gave descriptors for (Restorer::external_fds): they carry the
  // image's status flags, whatever else the restorer gives its own description for.
  std::set<int> provided_fds;
};

// Throws ferry::Error naming the first difference.
void verify_restored(pid_t pid, const image::Image& img, const VerifyOptions& options);

}  // namespace ferry::cr
