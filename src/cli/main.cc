// ferry: move running processes between machines; checkpoint and restore them on one machine.
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "cli/connect.h"
#include "util/error.h"
#include "util/log.h"
#include "util/printable.h"
#include "version.h"

namespace ferry::cli {

int& exit_status() {
  static int status = 0;
  return status;
}

int& verbosity() {
  static int v = 0;
  return v;
}

void start_logging() {
  ferry::init_logging(verbosity());
}

void require_root(const char* what) {
  if (::geteuid() != 0) fail("{} needs root (ferry traces and rebuilds processes)", what);
}

}  // namespace ferry::cli

int main(int argc, char** argv) {
  CLI::App app{"ferry: checkpoint, restore and migrate running Linux processes"};
  app.set_version_flag("--version", ferry::kFerryVersion);
  app.require_subcommand(1);
  app.fallthrough();  // `ferry run --node node2 -- CMD` asks node2, as `ferry --node node2 run` does
  app.add_flag("-v,--verbose", ferry::cli::verbosity(), "more log output (repeat for debug)");
  app.add_option("--cluster", ferry::cli::target().cluster, "cluster directory (default: the one 'cluster up' made)");
  app.add_option("--node", ferry::cli::target().node, "node whose ferryd to ask (default: the first)");
  app.add_option("--socket", ferry::cli::target().socket, "control socket of a ferryd");
  ferry::cli::add_checkpoint(app);
  ferry::cli::add_restore(app);
  ferry::cli::add_image(app);
  ferry::cli::add_cluster(app);
  ferry::cli::add_run(app);
  ferry::cli::add_ps(app);
  ferry::cli::add_nodes(app);
  ferry::cli::add_logs(app);
  ferry::cli::add_kill(app);
  ferry::cli::add_wait(app);
  ferry::cli::add_migrate(app);
  ferry::cli::add_job(app);
  ferry::cli::add_snapshot(app);
  ferry::cli::add_policy(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other error, and the usage exit status.
    std::fprintf(stderr, "ferry: %s (ferry --help for usage)\n",
                 ferry::printable(e.what()).c_str());
    return 2;
  } catch (const ferry::Error& e) {
    // One line, whatever the message carries (a path or an id from outside).
    std::fprintf(stderr, "ferry: %s\n", ferry::printable(e.what()).c_str());
    return e.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry: internal error: %s\n", ferry::printable(e.what()).c_str());
    return 70;
  }
  return ferry::cli::exit_status();
}
