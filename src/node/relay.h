// The output relay: a task's stdout and stderr are one pipe whose read end ferryd holds. The
// relay reads it and delivers the bytes, with their offset in the task's output, to the task's
// home node. Delivery is at-least-once and the home's log store keeps each offset once, so every
// byte is logged exactly once, across restarts of delivery and across migrations: a migrating
// task's relay is drained (the task is frozen, nothing new arrives) and the node it goes to goes
// on from that offset.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "util/fd.h"

namespace ferry::node {

class OutputRelay {
 public:
  // deliver(task, home, offset, data) returns the home's new end offset; throws on failure.
  using Deliver =
      std::function<uint64_t(const std::string&, const std::string&, uint64_t, const std::string&)>;
  explicit OutputRelay(Deliver deliver);
  ~OutputRelay();

  void attach(const std::string& task, const std::string& home, UniqueFd read_end, uint64_t offset);
  // Reads everything the pipe holds now and delivers it (retrying up to timeout_ms). Returns
  // the offset after the last byte. Throws when the home does not take it in time.
  uint64_t drain(const std::string& task, int timeout_ms);
  // drain(), then stop watching the pipe (the read end is closed). Returns the final offset.
  uint64_t drain_and_detach(const std::string& task, int timeout_ms);
  void detach(const std::string& task);

 private:
  struct Stream {
    std::string home;
    UniqueFd fd;
    uint64_t offset = 0;  // next byte to deliver
    std::string pending;  // read, not delivered yet
    bool eof = false;
  };
  void loop();
  bool read_available(Stream& s);                  // true when the pipe has nothing more right now
  bool flush(const std::string& task, Stream& s);  // false when the home refused/failed

  Deliver deliver_;
  std::mutex mu_;
  std::map<std::string, Stream> streams_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd: the set changed
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ferry::node
