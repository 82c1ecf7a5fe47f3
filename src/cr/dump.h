// Freezing a process and dumping it, with the process still held afterwards: the caller decides
// what becomes of it (checkpoint: kill or let go once the image is on disk; migration: let go
// on abort, kill on commit). Until then it stays frozen and untouched.
#pragma once

#include <sys/types.h>

#include "cr/ptrace/tracee.h"
#include "image.pb.h"
#include "image/page_sink.h"
#include "util/clock.h"

namespace ferry::cr {

class FrozenProcess {
 public:
  FrozenProcess(Tracee&& tracee, image::Image&& img, Stopwatch freeze);
  FrozenProcess(FrozenProcess&&) = default;

  image::Image& image() { return image_; }
  pid_t pid() const { return tracee_.pid(); }
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
  Tracee tracee_;
  image::Image image_;
  Stopwatch freeze_;
};

// Checks, freezes and dumps process pid; page data goes to sink. The image is complete except
// for its pages_file summary and id (the sink's and the caller's business). Throws ferry::Error;
// a failure leaves the process running as it was.
FrozenProcess freeze_and_dump(pid_t pid, image::PageSink& sink);

}  // namespace ferry::cr
