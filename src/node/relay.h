// The output relay: a task's stdout and stderr are one pipe whose read end ferryd holds (and
// ferry-init keeps a copy of, so that the pipe outlives a ferryd). The relay delivers the bytes,
// with their offset in the task's output, to the task's home node.
//
// Nothing is taken out of the pipe before the home has it: the relay peeks at the pipe's bytes
// (tee() into a pipe of its own), delivers them, and only then has the keeper consume exactly
// that many. A ferryd that dies at any point leaves the undelivered bytes in the pipe, and the
// next ferryd goes on from the keeper's count. Delivery is at-least-once and the home's log store
// keeps each offset once, so every byte is logged exactly once, across restarts of delivery,
// across restarts of ferryd and across migrations: a migrating task's relay is drained (the task
// is frozen, nothing new arrives) and the node it goes to goes on from that offset.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "node/init_link.h"
#include "util/fd.h"

namespace ferry::node {

class OutputRelay {
 public:
  // deliver(task, home, offset, data) returns the home's new end offset; throws on failure.
  using Deliver =
      std::function<uint64_t(const std::string&, const std::string&, uint64_t, const std::string&)>;
  OutputRelay(Deliver deliver, PipeKeeper& keeper);
  ~OutputRelay();

  // A new task's pipe: the keeper keeps it too, from `offset` on.
  void attach(const std::string& task, const std::string& home, UniqueFd read_end, uint64_t offset);
  // A pipe the keeper already holds (a task adopted by a restarted ferryd).
  void adopt(const std::string& task, const std::string& home, UniqueFd read_end, uint64_t offset);
  // Delivers everything the pipe holds now (retrying up to timeout_ms). Returns the offset after
  // the last byte. Throws when the home does not take it in time.
  uint64_t drain(const std::string& task, int timeout_ms);
  // drain(), then stop watching the pipe (the read ends are closed). Returns the final offset.
  uint64_t drain_and_detach(const std::string& task, int timeout_ms);
  void detach(const std::string& task);

 private:
  struct Stream {
    std::string home;
    UniqueFd fd;
    uint64_t offset = 0;  // offset of the pipe's first byte (consumed so far)
    std::string pending;  // peeked at, not delivered yet: the pipe's first bytes
    bool eof = false;
    bool watched = false;  // in the epoll set
  };
  void watch(Stream& s, bool on);
  bool peek(Stream& s);                             // true when the pipe has nothing more now
  bool flush(const std::string& task, Stream& s);   // false when the home refused/failed
  void loop();

  Deliver deliver_;
  PipeKeeper& keeper_;
  std::mutex mu_;
  std::map<std::string, Stream> streams_;
  UniqueFd epoll_;
  UniqueFd wake_;                  // eventfd: the set changed
  UniqueFd scratch_r_, scratch_w_;  // where peeked bytes are copied to
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace ferry::node
