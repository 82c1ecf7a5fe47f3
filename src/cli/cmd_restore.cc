// ferry restore --images DIR [--detach] [--same-pid] [--cgroups own|restorer]
#include <cstdio>

#include "cli/commands.h"
#include "cli/foreground.h"
#include "cr/restore.h"
#include "util/error.h"

namespace ferry::cli {

void add_restore(CLI::App& app) {
  auto* cmd = app.add_subcommand("restore", "rebuild a process from its image and let it run");
  static cr::RestoreOptions opts;
  static bool detach = false;
  cmd->add_option("--images", opts.images_dir, "image directory")->required();
  cmd->add_flag("--detach,-d", detach, "print the new PID and return once the process runs");
  cmd->add_flag("--same-pid", opts.same_pid, "fail if the original PID is taken");
  static std::string cgroups = "own";
  cmd->add_option("--cgroups", cgroups,
                  "own: back into the process's own control groups, failing if one is missing "
                  "(default); restorer: stay in the restorer's")
      ->check(CLI::IsMember({"own", "restorer"}));
  cmd->callback([] {
    start_logging();
    require_root("restore");
    if (!detach) block_forwarded_signals();
    opts.stay_in_restorers_cgroups = cgroups == "restorer";
    cr::RestoreResult r = cr::restore(opts);
    for (auto& note : r.notes) std::fprintf(stderr, "ferry: note: %s\n", note.c_str());
    if (r.pid != r.original_pid)
      std::fprintf(stderr, "ferry: PID %d was in use; the process was restored as PID %d\n",
                   r.original_pid, r.pid);
    if (detach) {
      std::printf("%d\n", r.pid);
      std::fflush(stdout);
      return;
    }
    exit_status() = wait_foreground(r.pid);
  });
}

}  // namespace ferry::cli
