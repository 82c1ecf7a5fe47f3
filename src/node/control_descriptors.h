// The control descriptors of the tasks on this node (issue 11). Every task gets one end of a
// Unix stream socketpair (its number in FERRY_CONTROL_FD); ferryd holds the other. A line the
// task writes is a request (node/task_control.h), which the node hands to its handler; the reply
// is one line back. While a request is being handled, the next one waits. The task's end is a
// "provided" socket (cr/provided.h): a migration does not take it along as a socket, the
// destination gives the task a new one at the same number, joined to its own ferryd.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "node/provided_pair.h"
#include "util/fd.h"

namespace ferry::node {

using ControlPair = ProvidedPair;

class ControlDescriptors {
 public:
  // Called on a thread of its own for each request line (without its newline).
  using Handler = std::function<void(const std::string& task_id, const std::string& line)>;
  explicit ControlDescriptors(Handler handler);
  ~ControlDescriptors();
  ControlDescriptors(const ControlDescriptors&) = delete;
  ControlDescriptors& operator=(const ControlDescriptors&) = delete;

  static ControlPair make_pair();
  // Serves the task's descriptor from here on (takes the node's side of the pair); `first`, when
  // not empty, is a reply the task reads first (to the request that moved it here).
  void serve(const std::string& task_id, ControlPair& pair, const std::string& first = "");
  // The reply to the task's request (one line); the next request is read after it.
  void reply(const std::string& task_id, const std::string& line);
  // The task left this node or ended.
  void drop(const std::string& task_id);

 private:
  struct Descriptor {
    UniqueFd fd;
    uint64_t task_inode = 0;
    std::string pending;    // read, no newline yet
    bool busy = false;      // a request is being handled
    bool overlong = false;  // skipping the rest of a line that was too long
  };
  void loop();
  void read_from(const std::string& task_id, Descriptor& d);
  void next_request(const std::string& task_id, Descriptor& d);
  void watch(Descriptor& d, bool on);

  Handler handler_;
  std::mutex mu_;
  std::map<std::string, Descriptor> by_task_;
  UniqueFd epoll_, wake_;
  std::atomic<bool> stop_{false};
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers_;  // handling requests (finished ones are joined as new ones start)
  std::thread thread_;
};

}  // namespace ferry::node
