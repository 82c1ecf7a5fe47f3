// What waits in a reader's end to go into its task's pipe or socket before anything else (the
// messages a moved task had not read, what was taken ahead of a snapshot's marker), with the
// bytes it holds counted as it changes: the end tells its writer that figure with every
// acknowledgement (the channel's capacity covers it), and bounds what it takes ahead by it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

namespace ferry::node {

// A message, or a piece of bytes, shared with the snapshots' recordings that began while it
// waited (a task's pause copies none of it). `offset`: how much of it is in the pipe already.
struct UnreadPiece {
  std::shared_ptr<const std::string> data;
  size_t offset = 0;
  std::string_view view() const { return std::string_view(*data).substr(offset); }
};

class UnreadPieces {
 public:
  bool empty() const { return pieces_.empty(); }
  size_t size() const { return pieces_.size(); }
  uint64_t bytes() const { return bytes_; }  // what is not in the pipe yet
  const UnreadPiece& front() const { return pieces_.front(); }
  auto begin() const { return pieces_.begin(); }
  auto end() const { return pieces_.end(); }

  void push_back(UnreadPiece piece) {
    bytes_ += piece.view().size();
    pieces_.push_back(std::move(piece));
  }
  void push_front(UnreadPiece piece) {
    bytes_ += piece.view().size();
    pieces_.push_front(std::move(piece));
  }
  void pop_front() {
    bytes_ -= pieces_.front().view().size();
    pieces_.pop_front();
  }
  // `n` more bytes of the first piece went in (all of it: it goes).
  void advance_front(size_t n) {
    if (n >= pieces_.front().view().size()) return pop_front();
    pieces_.front().offset += n;
    bytes_ -= n;
  }
  void clear() {
    pieces_.clear();
    bytes_ = 0;
  }

 private:
  std::deque<UnreadPiece> pieces_;
  uint64_t bytes_ = 0;
};

}  // namespace ferry::node
