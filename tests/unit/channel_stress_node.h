// A node of the channel ends stress test, with what ferryd gives the channel ends on it: the
// Node service's ChannelStream (where writers of other nodes find the reader's end here), a data
// listener for the links they then open, and a stub by which writers here reach other nodes. All
// on loopback, without TLS (the test is about the ends, not about who may talk to them).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>

#include "ferry.grpc.pb.h"
#include "node/channels/channel_link.h"
#include "node/channels/reader_end.h"
#include "node/channels/writer_end.h"
#include "util/fd.h"

namespace ferry::node {

// The one channel of these tests (job "stress", channel 1, from task a's fd 1 to task b's fd 0,
// 1 MiB of capacity). `peer_node`: where the other end was when the job began.
rpc::ChannelEnd stress_end_spec(bool writer, bool messages, const std::string& peer_node);

// A channel end's descriptors as a node makes them (a pipe whose node's side is 1 MiB, or a
// socket pair for messages); the task's side non-blocking for the "task" threads of the tests,
// which must not block while frozen.
struct EndFds {
  UniqueFd task_side, node_side;
  uint64_t task_inode = 0;  // (messages)
};
EndFds stress_end_fds(bool writer, bool messages);

class StressNode {
 public:
  explicit StressNode(std::string name);
  ~StressNode();
  StressNode(const StressNode&) = delete;
  StressNode& operator=(const StressNode&) = delete;

  const std::string& name() const { return name_; }
  // What a writer end here is made with: `stub_of` names the other nodes' stubs, `locate_peer`
  // where the reader's end is now.
  ChannelLinks links(std::function<rpc::Node::Stub&(const std::string&)> stub_of,
                     std::function<std::optional<std::string>(const rpc::ChannelEnd&)> locate_peer);
  // The reader's end here (one that moved away stays: it tells writers where it went).
  void set_reader(std::shared_ptr<ReaderEnd> reader);
  std::shared_ptr<ReaderEnd> reader();
  rpc::Node::Stub& stub() { return *stub_; }
  // The writers' links that came to a reader's end here (the test checks that it tried the way
  // between nodes at all).
  int links_taken() const { return links_taken_; }
  // Breaks the links that came here (as a network that drops connections): the writer finds
  // the reader again and resends from what it says it has. Returns how many were open.
  int break_links();
  // Stops serving (streams still open are cancelled); before the ends that serve them go.
  void shut_down();

 private:
  class Service;
  void accept_links();

  const std::string name_;
  std::mutex mu_;
  std::shared_ptr<ReaderEnd> reader_;
  LinkRendezvous rendezvous_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<rpc::Node::Stub> stub_;
  UniqueFd data_listener_;
  std::string link_address_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> links_taken_{0};
  // Copies of the last links' sockets, to shut them (a reader end always shuts its link when it
  // is done with it: a copy held here keeps nothing open that it would close).
  std::mutex links_mu_;
  std::vector<UniqueFd> links_;
  std::thread acceptor_;
};

// Two nodes, a channel's writer on n1 sending to its reader on n2 (or wherever `locate_reader`
// says) over a link, as the channel tests that look at one link use them.
struct StressPair {
  StressPair();
  // A writer's end on n1, started; its task's side goes to `*task_fd`.
  std::shared_ptr<WriterEnd> start_writer(
      bool messages, UniqueFd* task_fd,
      std::function<std::optional<std::string>(const rpc::ChannelEnd&)> locate_reader);
  // The writer's end goes and the nodes shut down while the reader's task (`reader_fd`) reads
  // what is left: after a failure, its end's delivery into a full pipe would otherwise hold the
  // shutdown up.
  void shut_down(std::shared_ptr<WriterEnd>& writer, int reader_fd);

  std::unique_ptr<StressNode> n1, n2;
};

}  // namespace ferry::node
