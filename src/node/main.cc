// ferryd --config FILE: one node of a ferry cluster (see node/config.h for the file).
#include <malloc.h>
#include <signal.h>

#include <cstdio>

#include <CLI/CLI.hpp>

#include "node/config.h"
#include "node/daemon.h"
#include "util/error.h"
#include "util/log.h"
#include "version.h"

int main(int argc, char** argv) {
  CLI::App app{"ferryd: a node of a ferry cluster"};
  app.set_version_flag("--version", ferry::kFerryVersion);
  std::string config;
  int more = 0;  // a daemon logs at info: migrations, refusals and arrivals are worth a line each
  app.add_option("--config", config, "node configuration (TOML)")->required();
  app.add_flag("-v,--verbose", more, "more log output (-vv: everything)");
  CLI11_PARSE(app, argc, argv);
  ferry::init_logging(1 + more, true);
  // Every migration runs on threads of its own; glibc would give each new thread an arena of
  // its own (up to 8 per core), each keeping what it once held. Two are plenty for a daemon
  // whose page data lives in mappings, not in malloc.
  mallopt(M_ARENA_MAX, 2);
  // Channel items (up to 1 MiB each) come and go all the time: from the heap, reused, rather than
  // each a fresh mapping whose pages fault in one by one (slow here: docs/PLATFORM figures), and
  // what was freed stays for the next ones (up to 64 MiB at the top of an arena).
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  // Signals are read from signalfds, by dedicated threads: block them before any thread exists.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  // Only children that end matter to ferryd. Without SA_NOCLDSTOP every stop of a process it
  // holds by ptrace (two per injected call) raised a SIGCHLD as well, which woke the reaper and
  // the signal thread; the reaper's scan of /proc (~130 us) then ran between the stops, on the
  // CPU the held process and its tracer share (a 64 MiB snapshot's pause: ~30% of it).
  struct sigaction chld {};
  chld.sa_handler = SIG_DFL;
  chld.sa_flags = SA_NOCLDSTOP;
  sigemptyset(&chld.sa_mask);
  sigaction(SIGCHLD, &chld, nullptr);
  signal(SIGPIPE, SIG_IGN);
  try {
    ferry::node::Daemon daemon(ferry::node::load_config(config));
    return daemon.run();
  } catch (const ferry::Error& e) {
    std::fprintf(stderr, "ferryd: %s\n", e.what());
    return 1;
  }
}
