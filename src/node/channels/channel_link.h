// A channel's data link between two daemons: the items of a channel whose ends are on two nodes
// go on a TCP connection of its own, in frames authenticated with Poly1305
// (transfer/frame_auth.h), not through gRPC over TLS, which would cap them at a third of what the
// network carries (bench/RESULTS.md). The ChannelStream still opens it and stays open beside it:
// its first frame carries the link's key and its RESUME answer the token the connection opens
// with, both over the cluster's mutual TLS; and it tells either side when the other is gone (or
// a hold or a newer writer broke it off), which then shuts the link.
//
// Frames (frame_auth.h's header): writer -> reader, one per item: addr = its sequence number,
// aux = a marker's snapshot id, flags = its kind, the data after. Reader -> writer: addr = the
// next item wanted (everything before is in the reader's pipe, or held by its end), aux = the
// bytes its end holds (ChannelReply::held_bytes), flags = ACK or GONE.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string_view>
#include <vector>

#include "channel/channel_stream.h"
#include "ferry.pb.h"
#include "transfer/frame_auth.h"
#include "util/fd.h"

namespace ferry::node {

class LinkSender {
 public:
  LinkSender(UniqueFd sock, const transfer::Key& key);
  // Throws StreamBroken. (The items are read in place: see ChannelSendQueue::peek_from.)
  void send(const std::vector<const channel::Item*>& items);
  // The reader's next answer, ACK or GONE (blocks; throws StreamBroken once the link is shut).
  rpc::ChannelReply next_reply();
  void shut();  // what blocks on the link returns (any thread)

 private:
  UniqueFd sock_;
  const transfer::Key key_;
  transfer::FrameMac out_mac_, in_mac_;
  uint64_t out_seq_ = 0, in_seq_ = 0;
};

class LinkReceiver;

// An item as it came: its data is in the receiver's buffer until the next one.
struct LinkItem {
  uint64_t seq = 0;
  channel::Item::Kind kind = channel::Item::Kind::kData;
  uint64_t marker = 0;
  std::string_view data;
  // Set when the data is also still in the link's socket (LinkReceiver::splice_data).
  LinkReceiver* in_socket = nullptr;
};

class LinkReceiver {
 public:
  LinkReceiver(UniqueFd sock, const transfer::Key& key);
  LinkItem next();      // blocks; throws StreamBroken, or Error for a frame that fails its tag
  bool wait_readable(int timeout_ms);  // something came (or the link ended) within the time
  // A large item's data is read by peeking, and stays in the socket once its tag checked out:
  // moves the last item's data[offset, offset + len) from the socket into `pipe` without copying
  // it (the pipe's pages are the socket's). Offsets only grow from one call to the next; what
  // is skipped, and what is left when the next item is asked for, is dropped. Returns the bytes
  // moved, or -1 with errno (EAGAIN: the pipe is full). Throws StreamBroken.
  ssize_t splice_data(int pipe, size_t offset, size_t len);
  void reply(rpc::ChannelReply::Kind kind, uint64_t next_seq, uint64_t held_bytes = 0);
  void shut();

 private:
  // The next len bytes of the link, into dst; with read_ahead, what else has come too (into in_).
  void take(void* dst, size_t len, bool read_ahead = true);
  void check_tag(const transfer::FrameHeader& h, const uint8_t* tag);
  LinkItem item_of(const transfer::FrameHeader& h);
  // The frame whose header is `h` (still in the socket), read by peeking (see splice_data).
  LinkItem next_in_socket(const transfer::FrameHeader& h);
  void drop_rest();  // what is left of the last item in the socket

  UniqueFd sock_;
  const transfer::Key key_;
  transfer::FrameMac in_mac_, out_mac_;
  uint64_t in_seq_ = 0, out_seq_ = 0;
  std::vector<char> buf_;  // grows to the largest item (no fresh pages for every one)
  // What one read brought beyond what was taken: a small item's header, data and tag come in one
  // read, not three. (A large item's data goes straight into buf_.)
  std::vector<char> in_;
  size_t in_pos_ = 0, in_end_ = 0;
  // Splicing: the largest data that may be peeked whole (a quarter of the socket's receive
  // buffer: it must fit there while it stays), whether the last item was large (the next
  // header is then peeked to decide), and what of the last item's frame is still in the
  // socket: its data from data_taken_ on, and its tag.
  size_t peek_max_ = 0;
  bool last_large_ = false;
  size_t rest_in_socket_ = 0, data_taken_ = 0;
};

// The tokens a node's reader ends wait on, and the connections that open with them (the node's
// data listener hands them over: arrived()).
class LinkRendezvous {
 public:
  transfer::Token expect();
  // True when a reader end waits for `token` (it takes the connection).
  bool arrived(const transfer::Token& token, UniqueFd& sock);
  // The connection for `token` within timeout_ms, unless `stop` says to give up first (checked
  // every 20 ms); an invalid fd otherwise. The token is forgotten either way.
  UniqueFd await(const transfer::Token& token, int timeout_ms, const std::function<bool()>& stop);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<transfer::Token, UniqueFd> waiting_;  // an invalid fd until the connection came
};

// The link's socket: no timeouts (a channel may be quiet for hours), buffers of 8 MiB.
void tune_link_socket(int fd);

}  // namespace ferry::node
