// The Starter's decisions, each with its reason: what `ferry events` shows. The last 2000 of a
// node are kept in memory and written to its log.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::policy {

class EventLog {
 public:
  explicit EventLog(std::string node) : node_(std::move(node)) {}
  // Stamps the event (node, time, sequence) and keeps it.
  void add(rpc::PolicyEvent e);
  std::vector<rpc::PolicyEvent> after(uint64_t unix_ms) const;

 private:
  std::string node_;
  mutable std::mutex mu_;
  std::deque<rpc::PolicyEvent> events_;
  uint64_t seq_ = 0;
};

// One line for a person: "12:00:01.234 node1 moved node1.3 node1->node2 (load-sharing): ...".
std::string describe(const rpc::PolicyEvent& e);

}  // namespace ferry::policy
