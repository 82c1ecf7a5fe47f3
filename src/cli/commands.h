// The ferry subcommands. Each add_* registers its options on the app and returns the code to run.
#pragma once

#include <CLI/CLI.hpp>

namespace ferry::cli {

void add_checkpoint(CLI::App& app);
void add_restore(CLI::App& app);
void add_image(CLI::App& app);
void add_cluster(CLI::App& app);
// The task verbs, one file each (cmd_<verb>.cc).
void add_run(CLI::App& app);
void add_ps(CLI::App& app);
void add_nodes(CLI::App& app);
void add_logs(CLI::App& app);
void add_kill(CLI::App& app);
void add_wait(CLI::App& app);
void add_migrate(CLI::App& app);
// Jobs of tasks connected by channels (cmd_job.cc).
void add_job(CLI::App& app);
// Snapshots of jobs (cmd_snapshot.cc).
void add_snapshot(CLI::App& app);
// The Starter: policy, events, drain, undrain (cmd_policy.cc).
void add_policy(CLI::App& app);

// `ferry wait` of a task that is lost (gone without an exit status).
constexpr int kLostStatus = 125;

// Exit status of the command that ran (set by the subcommand callbacks).
int& exit_status();
// -v count; subcommands call start_logging() first.
int& verbosity();
void start_logging();
void require_root(const char* what);

}  // namespace ferry::cli
