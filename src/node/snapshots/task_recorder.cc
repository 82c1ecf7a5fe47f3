#include "node/snapshots/task_recorder.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "cr/dump.h"
#include "image/image_files.h"
#include "image/image_key.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// The bytes the task had not read of its channels of bytes are the channels' recorded state, not
// the task's: its image does not carry them twice.
void leave_channel_bytes_out(image::Image& img, const std::vector<rpc::ChannelEnd>& ends) {
  for (auto& end : ends) {
    if (end.writer() || end.messages()) continue;
    uint64_t file_id = 0;
    for (auto& fd : img.files().fds())
      if (fd.num() == end.fd()) file_id = fd.file_id();
    for (auto& f : img.files().files()) {
      if (f.id() != file_id || f.kind_case() != image::OpenFile::kPipe) continue;
      for (auto& po : *img.mutable_files()->mutable_pipes())
        if (po.id() == f.pipe().pipe_id()) po.clear_queued();
    }
  }
}

void record(TaskToRecord& task, ChannelEnds& channels, std::promise<TaskCut>& paused,
            const std::function<void(rpc::SnapshotTaskReport, std::string)>& written) {
  Stopwatch since;
  TaskCut cut;
  std::unique_ptr<cr::FrozenProcess> frozen;
  std::unique_ptr<cr::HeldCopy> copy;
  double describe_ms = 0, cut_ms = 0, fork_ms = 0;
  try {
    cr::FreezeOptions options;
    options.keep_cpu_shared = true;  // the fork follows at once
    frozen = std::make_unique<cr::FrozenProcess>(cr::freeze_and_describe(task.pid, options));
    describe_ms = frozen->frozen_us() / 1000.0;
    // From here on the markers are out: a failure fails the snapshot, not just this call.
    cut.cuts = channels.cut(task.task_id, task.pid, task.marker, &cut.ended);
    leave_channel_bytes_out(frozen->image(), task.ends);
    cut_ms = frozen->frozen_us() / 1000.0 - describe_ms;
    copy = frozen->fork_copy();
    fork_ms = frozen->frozen_us() / 1000.0 - describe_ms - cut_ms;
    frozen->resume();
    // The pause: from the stop to the resume (the checks before the stop ran beside the task).
    cut.pause_ms = frozen->frozen_us() / 1000.0;
  } catch (const std::exception& e) {
    frozen.reset();  // (lets it run on, if it was held)
    if (cut.cuts.empty()) {
      paused.set_exception(std::current_exception());
      return;
    }
    cut.pause_ms = since.elapsed_ms();
    paused.set_value(std::move(cut));
    written({}, fmt::format("task {} could not be recorded: {}", task.name, e.what()));
    return;
  }
  spdlog::info(
      "snapshot: task {} paused {:.2f} ms (described {:.2f}, channels cut {:.2f}, forked "
      "{:.2f})",
      task.name, cut.pause_ms, describe_ms, cut_ms, fork_ms);
  rpc::SnapshotTaskReport report;
  report.set_name(task.name);
  report.set_task_id(task.task_id);
  report.set_node(task.node);
  report.set_pause_ms(cut.pause_ms);
  report.set_image_dir(task.image_dir);
  paused.set_value(std::move(cut));
  try {
    frozen->read_pages_from(*copy);
    image::ImageWriter writer(task.image_dir, image::host_image_key());
    frozen->dump_pages(writer.pages());
    report.set_image_bytes(writer.commit(frozen->image(), false));
    copy.reset();
    frozen.reset();
    report.set_write_ms(since.elapsed_ms());
  } catch (const std::exception& e) {
    copy.reset();
    frozen.reset();
    written({}, fmt::format("the image of task {} could not be written: {}", task.name, e.what()));
    return;
  }
  written(std::move(report), "");
}

}  // namespace

std::thread record_task(TaskToRecord task, ChannelEnds& channels, std::promise<TaskCut> paused,
                        std::function<void(rpc::SnapshotTaskReport, std::string failure)> written,
                        std::shared_ptr<std::atomic<bool>> finished) {
  return std::thread([task = std::move(task), &channels, paused = std::move(paused),
                      written = std::move(written), finished]() mutable {
    try {
      record(task, channels, paused, written);
    } catch (const std::exception& e) {
      spdlog::error("snapshot: recording task {}: {}", task.name, e.what());
    }
    *finished = true;
  });
}

}  // namespace ferry::node
