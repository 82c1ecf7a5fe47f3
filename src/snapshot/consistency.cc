#include "snapshot/consistency.h"

#include <fmt/format.h>

namespace ferry::snapshot {
namespace {

std::string check_channel(const rpc::SnapshotChannelReport& c) {
  const std::string name = fmt::format("channel {} -> {}", c.from(), c.to());
  if (!c.writer_cut()) return name + ": its writer was not recorded";
  if (!c.reader_cut()) return name + ": its reader was not recorded";
  if (!c.recorded()) return name + ": its state was not recorded (no marker reached its reader)";
  if (c.written_bytes() != c.read_bytes() + c.recorded_bytes())
    return fmt::format("{}: {} bytes written, but {} read and {} recorded", name, c.written_bytes(),
                       c.read_bytes(), c.recorded_bytes());
  if (c.messages() && c.written_messages() != c.read_messages() + c.recorded_messages())
    return fmt::format("{}: {} messages written, but {} read and {} recorded", name,
                       c.written_messages(), c.read_messages(), c.recorded_messages());
  return "";
}

}  // namespace

std::string check_consistency(rpc::SnapshotReport& report) {
  std::string first;
  for (auto& c : *report.mutable_channels()) {
    std::string why = check_channel(c);
    c.set_consistent(why.empty());
    if (first.empty()) first = why;
  }
  report.set_consistent(first.empty());
  return first;
}

}  // namespace ferry::snapshot
