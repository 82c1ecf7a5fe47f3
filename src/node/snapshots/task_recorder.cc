#include "node/snapshots/task_recorder.h"

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include <thread>

#include "cr/dump.h"
#include "cr/ptrace/tracee.h"
#include "cr/resources/map_check.h"
#include "cr/resources/vm_flags.h"
#include "image/image_files.h"
#include "image/image_key.h"
#include "node/task_fds.h"
#include "snapshot/channel_state.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// The bytes the task had not read of its channels of bytes are the channels' recorded state, and
// those it wrote that its ends had not taken are kept beside its image (ID/channels/N.unsent, as
// they were at the cut): its image does not carry them twice. (Only the channel's own pipe,
// wherever the task holds it: one the task made itself is its own, which a restore leaves it.)
void leave_channel_bytes_out(image::Image& img, const std::vector<rpc::ChannelEnd>& ends) {
  for (auto& end : ends) {
    const image::PipeObject* pipe = channel_pipe_of(img, end);
    if (!pipe) continue;
    for (auto& po : *img.mutable_files()->mutable_pipes())
      if (&po == pipe) po.clear_queued();
  }
}

// A fork copy lacks MADV_DONTFORK regions and sees MADV_WIPEONFORK ones zeroed: a task with
// either is written from itself, and stays stopped until its pages are out.
bool copy_would_differ(const image::Image& img) {
  for (auto& v : img.memory().vmas())
    if (v.vm_flags() & (cr::kVmDontFork | cr::kVmWipeOnFork)) return true;
  return false;
}

// The task and what became of it during the pause: held (then a copy, or its pages already in
// `writer`), cut, let go.
struct Recording {
  std::unique_ptr<cr::FrozenProcess> frozen;
  std::unique_ptr<cr::HeldCopy> copy;
  std::unique_ptr<image::ImageWriter> writer;
  std::vector<WriterEnd::Unsent> unsent;
};

// What the task wrote that its ends had not taken, beside its image (read from the copies made
// at the cut, once it runs on).
void write_unsent(TaskToRecord& task, Recording& rec) {
  for (auto& u : rec.unsent) snapshot::write_channel_state(task.unsent_path(u.channel), u.items());
  rec.unsent.clear();
}

// Freezes the task, cuts its channel ends, makes its copy (or writes its pages) and lets it run.
// Throws before the cut: nothing was cut; after it: the snapshot fails (cut.cuts says which).
void pause_task(TaskToRecord& task, ChannelEnds& channels, TaskCut& cut, Recording& rec) {
  cr::FreezeOptions options;
  options.keep_cpu_shared = true;      // the fork follows at once
  options.inherited_from_copy = true;  // (asked again of the task itself if there is no copy)
  rec.frozen = std::make_unique<cr::FrozenProcess>(cr::freeze_and_describe(task.pid, options));
  cr::FrozenProcess& frozen = *rec.frozen;
  double described_ms = frozen.frozen_us() / 1000.0;
  // From here on the markers are out: a failure fails the snapshot, not just this call.
  cut.cuts = channels.cut(task.task_id, task.pid, task.marker, &cut.ended, &rec.unsent);
  leave_channel_bytes_out(frozen.image(), task.ends);
  double cut_ms = frozen.frozen_us() / 1000.0 - described_ms;
  const bool direct = copy_would_differ(frozen.image());
  if (direct) {
    frozen.describe_inherited();
    rec.writer = std::make_unique<image::ImageWriter>(task.image_dir, image::host_image_key());
    frozen.dump_pages(rec.writer->pages());
    cr::check_frozen_task_has_the_recorded_map(task.pid, frozen.image().memory(), false);
  } else {
    rec.copy = frozen.fork_copy();
  }
  double copied_ms = frozen.frozen_us() / 1000.0 - described_ms - cut_ms;
  frozen.resume();
  // The pause: from the stop to the resume (the checks before the stop ran beside the task).
  cut.pause_ms = frozen.frozen_us() / 1000.0;
  spdlog::info(
      "snapshot: task {} paused {:.2f} ms (described {:.2f}, channels cut {:.2f}, {} {:.2f})",
      task.name, cut.pause_ms, described_ms, cut_ms,
      direct ? "pages written while stopped (fork-dependent memory)" : "forked", copied_ms);
}

void record(TaskToRecord& task, ChannelEnds& channels, std::promise<TaskCut>& paused,
            const std::function<void(rpc::SnapshotTaskReport, std::string)>& written) {
  Stopwatch since;
  TaskCut cut;
  Recording rec;
  try {
    pause_task(task, channels, cut, rec);
  } catch (const std::exception& e) {
    rec = {};  // (lets it run on, if it was held)
    const auto* ended = dynamic_cast<const cr::ProcessEnded*>(&e);
    if (ended && ended->code() >= 0 && task.ended) task.ended(ended->code());
    if (cut.cuts.empty()) {
      paused.set_exception(std::current_exception());
      return;
    }
    cut.pause_ms = since.elapsed_ms();
    paused.set_value(std::move(cut));
    written({}, fmt::format("task {} could not be recorded: {}", task.name, e.what()));
    return;
  }
  rpc::SnapshotTaskReport report;
  report.set_name(task.name);
  report.set_task_id(task.task_id);
  report.set_node(task.node);
  report.set_pause_ms(cut.pause_ms);
  report.set_image_dir(task.image_dir);
  paused.set_value(std::move(cut));
  try {
    write_unsent(task, rec);
    if (rec.copy) {
      rec.frozen->describe_inherited_from(*rec.copy);
      rec.frozen->read_pages_from(*rec.copy);
      rec.writer = std::make_unique<image::ImageWriter>(task.image_dir, image::host_image_key());
      rec.frozen->dump_pages(rec.writer->pages());
    }
    report.set_image_bytes(rec.writer->commit(rec.frozen->image(), false));
    rec = {};
    report.set_write_ms(since.elapsed_ms());
  } catch (const std::exception& e) {
    rec = {};
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
