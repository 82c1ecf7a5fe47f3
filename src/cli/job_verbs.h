// The job verbs that look at or act on a running job (cmd_job_status.cc): list, show, wait, kill.
#pragma once

#include <CLI/CLI.hpp>

namespace ferry::cli {

void add_job_status_verbs(CLI::App* job);

}  // namespace ferry::cli
