// ferry checkpoint PID --images DIR [--leave-running] [--sync] [--json]
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cr/checkpoint.h"
#include "util/error.h"

namespace ferry::cli {

void add_checkpoint(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("checkpoint", "freeze a process and write its image (then kill it)");
  static int pid = 0;
  static cr::CheckpointOptions opts;
  static bool json = false;
  cmd->add_option("PID", pid, "process to checkpoint")->required();
  cmd->add_option("--images", opts.images_dir, "image directory (created if missing)")->required();
  cmd->add_flag("--leave-running", opts.leave_running, "let the process run on after the dump");
  cmd->add_flag("--sync", opts.sync, "fsync the image before reporting success");
  cmd->add_flag("--json", json, "print the report as JSON");
  cmd->callback([] {
    start_logging();
    require_root("checkpoint");
    cr::CheckpointResult r = cr::checkpoint(pid, opts);
    if (json) {
      nlohmann::json j = {{"pid", pid},
                          {"images", opts.images_dir},
                          {"image_bytes", r.image_bytes},
                          {"pages_written", r.pages_written},
                          {"pages_skipped_zero", r.pages_skipped_zero},
                          {"pages_from_files", r.pages_from_files},
                          {"freeze_ms", r.freeze_us / 1000.0},
                          {"total_ms", r.total_us / 1000.0},
                          {"remote_syscalls", r.remote_syscalls},
                          {"left_running", opts.leave_running}};
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf(
        "checkpointed process %d into %s: %.1f MiB image, %llu pages written "
        "(%llu zero pages skipped, %llu left to their files), frozen %.1f ms, total %.1f ms; %s\n",
        pid, opts.images_dir.c_str(), r.image_bytes / 1048576.0,
        static_cast<unsigned long long>(r.pages_written),
        static_cast<unsigned long long>(r.pages_skipped_zero),
        static_cast<unsigned long long>(r.pages_from_files), r.freeze_us / 1000.0,
        r.total_us / 1000.0,
        opts.leave_running ? "the process runs on" : "the process was stopped");
  });
}

}  // namespace ferry::cli
