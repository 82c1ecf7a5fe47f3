// Channel items as they travel between daemons (rpc::ChannelItem) and as the stream holds them
// (channel::Item), and the name of a channel end.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>

#include "channel/channel_stream.h"
#include "ferry.pb.h"

namespace ferry::node {

inline rpc::ChannelItem to_wire(const channel::Item& item) {
  rpc::ChannelItem w;
  w.set_seq(item.seq);
  w.set_data(item.data);
  w.set_end(item.kind == channel::Item::Kind::kEnd);
  w.set_marker(item.kind == channel::Item::Kind::kMarker);
  w.set_marker_id(item.marker);
  return w;
}

inline channel::Item from_wire(const rpc::ChannelItem& w) {
  channel::Item item;
  item.seq = w.seq();
  item.data = w.data();
  item.kind = w.end()      ? channel::Item::Kind::kEnd
              : w.marker() ? channel::Item::Kind::kMarker
                           : channel::Item::Kind::kData;
  item.marker = w.marker_id();
  return item;
}

// A channel end: its job, its channel's index there, and which end.
struct EndKey {
  std::string job;
  uint32_t channel = 0;
  bool writer = false;
  bool operator<(const EndKey& o) const {
    return std::tie(job, channel, writer) < std::tie(o.job, o.channel, o.writer);
  }
};

inline EndKey key_of(const rpc::ChannelEnd& e) {
  return {e.job(), e.channel(), e.writer()};
}

}  // namespace ferry::node
