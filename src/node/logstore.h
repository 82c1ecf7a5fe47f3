// The output log of every task homed on this node: one file per task, appended at exact byte
// offsets so that each byte is stored once however often a relay retries or however many nodes
// the task ran on.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace ferry::node {

class LogStore {
 public:
  explicit LogStore(std::string dir);

  // Appends data that starts at `offset` of the task's output. Bytes already stored are
  // skipped; a gap (offset beyond the end) is refused. Returns the new end.
  uint64_t append(const std::string& task, uint64_t offset, const std::string& data);
  uint64_t size(const std::string& task);
  // Up to max bytes from offset; waits up to wait_ms for more when there is none yet.
  std::string read(const std::string& task, uint64_t offset, size_t max, int wait_ms);
  void mark_ended(const std::string& task);
  bool ended(const std::string& task);

 private:
  std::string path(const std::string& task) const;
  std::string dir_;
  std::mutex mu_;
  std::condition_variable grew_;
  std::map<std::string, bool> ended_;
};

}  // namespace ferry::node
