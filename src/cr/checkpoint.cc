#include "cr/checkpoint.h"

#include "cr/dump.h"
#include "cr/resources/map_check.h"
#include "image/image_files.h"
#include "util/clock.h"

namespace ferry::cr {

CheckpointResult checkpoint(pid_t pid, const CheckpointOptions& options) {
  Stopwatch total;
  image::ImageWriter writer(options.images_dir, image::host_image_key());
  FrozenProcess frozen = freeze_and_dump(pid, writer.pages());
  // Advice given between the checks and the stop would be missing from the image (map_check.h).
  check_frozen_task_has_the_recorded_map(pid, frozen.image().memory(), false);
  CheckpointResult res;
  // The process goes only once its image is complete and in place.
  res.image_bytes = writer.commit(frozen.image(), options.sync);
  if (options.leave_running)
    frozen.resume();
  else
    frozen.destroy();
  const image::DumpStats& stats = frozen.image().stats();
  res.freeze_us = frozen.frozen_us();
  res.total_us = total.elapsed_us();
  res.pages_written = stats.pages_written();
  res.pages_skipped_zero = stats.pages_skipped_zero();
  res.pages_from_files = stats.pages_from_files();
  res.remote_syscalls = stats.remote_syscalls();
  return res;
}

}  // namespace ferry::cr
