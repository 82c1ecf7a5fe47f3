// Open files whose name is gone: a deleted device node, a hung-up pseudo-terminal slave, an
// unlinked FIFO, a removed directory. Restore makes each again without a name (in a private
// directory of ferry's, with the recorded mode and owner, opened and at once unlinked), so that
// the process holds what it held: the same device, a FIFO its other holders share, a dead
// directory.
#pragma once

#include <string>

#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

class Restorer;
struct FileRestoreState;

// A directory of ferry's (root, 0711, random name) for the nameless objects of one restore;
// removed with everything in it when the file table is rebuilt.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string fresh_name();

 private:
  std::string path_;
  int next_ = 0;
};

// "PATH (deleted)" -> PATH and true; anything else unchanged and false.
bool strip_deleted_suffix(std::string& link);

UniqueFd recreate_device(Restorer& r, const image::CharDevice& d, uint32_t image_flags, int flags,
                         FileRestoreState& s);
UniqueFd recreate_directory(Restorer& r, const image::Directory& d, int flags, FileRestoreState& s);
// The anchor (O_RDWR) of the nameless FIFO standing for pipe `pipe_id`: one per pipe.
int recreated_fifo(const image::PipeEnd& e, FileRestoreState& s);

}  // namespace ferry::cr
