// Freezing a process and dumping it, with the process still held afterwards: the caller decides
// what becomes of it (checkpoint: kill or let go once the image is on disk; migration: let go
// on abort, kill on commit). Until then it stays frozen and untouched.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>

#include "cr/pages.h"
#include "cr/ptrace/held_copy.h"
#include "cr/ptrace/tracee.h"
#include "image.pb.h"
#include "image/page_sink.h"
#include "util/clock.h"

namespace ferry::cr {

class DumpContext;

class FrozenProcess {
 public:
  FrozenProcess(std::unique_ptr<Tracee> tracee, std::unique_ptr<DumpContext> ctx,
                image::Image&& img, Stopwatch freeze);
  FrozenProcess(FrozenProcess&&) noexcept;
  ~FrozenProcess();

  image::Image& image() { return image_; }
  pid_t pid() const { return pid_; }
  // The page contents (private memory, shared memory, unlinked files), into sink. Fills the
  // page runs of the image. `selection` says which anonymous pages go now.
  void dump_pages(image::PageSink& sink, const PageSelection& selection = {});
  // A copy of the process to read its memory from once the process itself runs on (a snapshot:
  // fork_held_copy()); dump_pages() then reads the copy. The process must still be held.
  std::unique_ptr<HeldCopy> fork_copy();
  // What the copy shares with the process (FreezeOptions::inherited_from_copy left it out of
  // the freeze), asked of the copy: the process may already run on.
  void describe_inherited_from(const HeldCopy& copy);
  // The same, asked of the process itself (still held): when there is no copy to ask.
  void describe_inherited();
  void read_pages_from(const HeldCopy& copy);
  // A userfaultfd of the process (made by an injected call, so that it watches this process's
  // memory), handed to ferry and closed in the process again: the process never sees it.
  UniqueFd make_userfaultfd(int flags);
  // Time since the process was stopped.
  uint64_t frozen_us() const { return freeze_.elapsed_us(); }

  // Lets it run on exactly as before the freeze.
  void resume();
  // Ends it (its copy lives elsewhere now).
  void destroy();
  // From now on ferry's own death kills it (PTRACE_O_EXITKILL): once a migration has committed,
  // a source that dies must not let its old copy run again.
  void die_with_ferry();

 private:
  std::unique_ptr<Tracee> tracee_;
  std::unique_ptr<DumpContext> ctx_;
  image::Image image_;
  Stopwatch freeze_;
  pid_t pid_;
};

struct FreezeOptions {
  // Pre-copy: ferry's own dirty tracking write-protects the memory; on_stopped(), called right
  // after the stop and before anything is described, takes the last look and removes it.
  bool ferry_tracks_writes = false;
  std::function<void()> on_stopped;
  // The process and the freezing thread stay on one CPU after the description too, until the
  // process is let go (a snapshot: the injected fork follows at once). Otherwise they share it
  // only while the description runs calls in the process (shared_cpu.h).
  bool keep_cpu_shared = false;
  // A snapshot: what a fork copy has just as the process (handlers, credentials, limits...) is
  // left for FrozenProcess::describe_inherited_from() once the copy exists: the freeze is then
  // only what the copy cannot tell.
  bool inherited_from_copy = false;
};

// Checks and freezes process pid and describes it: everything but page contents (the remote
// tasking message of a migration). Throws ferry::Error; a failure leaves the process running
// as it was.
FrozenProcess freeze_and_describe(pid_t pid, const FreezeOptions& options = {});
// The process and its memory layout as /proc shows them, without stopping it (after the same
// checks as a freeze): what a migration's destination lays out before the freeze. The
// description taken at the freeze says whether it still holds.
image::Image describe_layout(pid_t pid);
// freeze_and_describe() and dump_pages(sink): a whole dump. The image is complete except for its
// pages_file summary and id (the sink's and the caller's business).
FrozenProcess freeze_and_dump(pid_t pid, image::PageSink& sink);

}  // namespace ferry::cr
