// An eventfd that wakes a channel end's thread out of its poll() on the task's pipe, and that
// goes with the pipe: a node keeps every finished end for `ferry job show`'s counts, and an end
// that kept its descriptors would hold two per channel and job for the daemon's life.
//
// It is closed only where nothing can be polling on it (by the polling thread itself, before any
// thread runs, or while a migration holds the end), so a poll never waits on a number that was
// closed meanwhile and reused; notify() from any thread is serialized with the close, so it
// never writes to a reused number either.
#pragma once

#include <cstdint>
#include <mutex>

#include "util/fd.h"

namespace ferry::node {

class WakeFd {
 public:
  WakeFd();  // throws when no eventfd can be made
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;

  int fd() const { return fd_.get(); }  // (-1 once closed: poll() ignores it)
  void notify();
  void drain();  // takes what notify() left, if anything
  void close();

 private:
  std::mutex mu_;
  UniqueFd fd_;
};

}  // namespace ferry::node
