// The check every snapshot gets before it is called consistent (issue 12): for each channel,
// what its writer had written when the writer was recorded equals what its reader had read when
// the reader was recorded plus the channel's recorded state. Bytes for a channel of bytes; bytes
// and messages for a channel of messages. ferry keeps the counters itself (the channel ends'),
// so the check needs nothing from the programs.
#pragma once

#include <string>

#include "ferry.pb.h"

namespace ferry::snapshot {

// Marks each channel of `report` consistent or not and the report as a whole; returns "" when
// every equation holds, else the first that does not, in words.
std::string check_consistency(rpc::SnapshotReport& report);

}  // namespace ferry::snapshot
