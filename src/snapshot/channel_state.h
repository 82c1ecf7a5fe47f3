// A channel's recorded state on disk (snapshot store: ID/channels/N.state): the messages, or the
// pieces of bytes, in the order they were in the channel. A header, then each item as its
// length (8 bytes, little endian) and its bytes; the file is written whole under a temporary
// name and renamed, so that a state file either is complete or is not there.
#pragma once

#include <string>
#include <vector>

namespace ferry::snapshot {

// Writes `items` to `path` (mode 0600). Throws with the reason (disk full, ...).
void write_channel_state(const std::string& path, const std::vector<std::string>& items);
// Reads it back. Throws for a file that is not one, or is cut short.
std::vector<std::string> read_channel_state(const std::string& path);

}  // namespace ferry::snapshot
