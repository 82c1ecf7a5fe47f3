#include "node/relay.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include <spdlog/spdlog.h>

#include "util/error.h"

namespace ferry::node {

OutputRelay::OutputRelay(Deliver deliver) : deliver_(std::move(deliver)) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll_ || !wake_) fail_errno(errno, "cannot start the output relay");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { loop(); });
}

OutputRelay::~OutputRelay() {
  stop_ = true;
  uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

void OutputRelay::attach(const std::string& task, const std::string& home, UniqueFd read_end,
                         uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = read_end.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, read_end.get(), &ev);
  Stream& s = streams_[task];
  s.home = home;
  s.fd = std::move(read_end);
  s.offset = offset;
}

bool OutputRelay::read_available(Stream& s) {
  if (!s.fd || s.eof) return true;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(s.fd.get(), buf, sizeof buf);
    if (n > 0) {
      s.pending.append(buf, static_cast<size_t>(n));
      if (s.pending.size() >= (4u << 20)) return false;  // deliver before reading more
      continue;
    }
    if (n == 0) s.eof = true;
    return true;  // EAGAIN or EOF: nothing more for now
  }
}

bool OutputRelay::flush(const std::string& task, Stream& s) {
  if (s.pending.empty()) return true;
  try {
    uint64_t end = deliver_(task, s.home, s.offset, s.pending);
    if (end < s.offset + s.pending.size()) return false;
    s.offset += s.pending.size();
    s.pending.clear();
    return true;
  } catch (const std::exception& e) {
    spdlog::debug("output of {} not delivered yet: {}", task, e.what());
    return false;
  }
}

void OutputRelay::loop() {
  std::vector<epoll_event> events(64);
  while (!stop_) {
    int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 500);
    std::lock_guard<std::mutex> lock(mu_);
    if (n > 0)
      for (int i = 0; i < n; i++) {
        if (events[i].data.fd == wake_.get()) {
          uint64_t v;
          (void)::read(wake_.get(), &v, sizeof v);
          continue;
        }
        for (auto& [task, s] : streams_)
          if (s.fd.get() == events[i].data.fd) {
            read_available(s);
            if (s.eof) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.fd.get(), nullptr);
          }
        // (a stream whose pending data is full is read again after its delivery)
      }
    // Deliver whatever waits (new bytes, or retries after a failure).
    for (auto& [task, s] : streams_) flush(task, s);
  }
}

uint64_t OutputRelay::drain(const std::string& task, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    bool delivered = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = streams_.find(task);
      if (it == streams_.end()) fail("no output relay for task {}", task);
      Stream& s = it->second;
      bool all_read = read_available(s);
      delivered = flush(task, s);
      if (delivered && all_read) return s.offset;
    }
    if (std::chrono::steady_clock::now() > deadline)
      fail("cannot deliver the output of {} to its home node", task);
    if (!delivered) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

uint64_t OutputRelay::drain_and_detach(const std::string& task, int timeout_ms) {
  uint64_t end = drain(task, timeout_ms);
  detach(task);
  return end;
}

void OutputRelay::detach(const std::string& task) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = streams_.find(task);
  if (it == streams_.end()) return;
  if (it->second.fd) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
  streams_.erase(it);
}

}  // namespace ferry::node
