// Long channel transfers while both ends keep moving: does a channel deliver every byte, once and
// in order, over gigabytes and dozens of migrations, without stalling, and without the daemons
// growing? (Two bugs that only long transfers showed -- a stall in 1 of 10 runs of 4 GiB, a pipe
// filled past its size -- are why this exists; bench/RESULTS.md.)
#pragma once

#include <cstdint>
#include <string>

#include "bench_cluster.h"

namespace ferry::bench {

// The tasks of a transfer. The source writes `bytes` of a pattern that `seed` makes (no two
// offsets alike, so a byte lost, repeated or moved shows) to its fd 1, in writes of several
// sizes; the sink reads its fd 0, compares every byte with the pattern, and prints
// "BYTES MS BAD_AT" (BAD_AT: the first offset that differs, -1 for none); it exits 0 only when
// it read exactly `bytes` and all of them were right.
int pattern_source(uint64_t bytes, uint64_t seed);
int pattern_sink(uint64_t bytes, uint64_t seed);

struct ChannelSoakOptions {
  int transfers = 10;
  uint64_t bytes = 2ull << 30;  // per transfer
  int every_ms = 300;           // between two migrations of an end
  bool snapshots = false;       // snapshots of the job one after the other meanwhile
  std::string self;             // the binary that runs the tasks (--pattern-source, --pattern-sink)
  std::string job_dir;          // where job files go
};

// Runs the transfers one after the other across a 2-node cluster, moving the writer and the
// reader in turn to the other node (every strategy in turn) while data flows; prints a markdown
// table, one row per transfer. Returns the number of transfers that did not deliver everything.
int channel_soak(BenchCluster& cluster, const ChannelSoakOptions& options);

}  // namespace ferry::bench
