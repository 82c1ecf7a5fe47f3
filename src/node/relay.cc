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
namespace {

constexpr size_t kScratchBytes = 1 << 20;

}  // namespace

OutputRelay::OutputRelay(Deliver deliver, PipeKeeper& keeper)
    : deliver_(std::move(deliver)), keeper_(keeper) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  int p[2];
  if (!epoll_ || !wake_ || ::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
    fail_errno(errno, "cannot start the output relay");
  scratch_r_.reset(p[0]);
  scratch_w_.reset(p[1]);
  ::fcntl(scratch_w_.get(), F_SETPIPE_SZ, static_cast<int>(kScratchBytes));
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

void OutputRelay::watch(Stream& s, bool on) {
  if (!s.fd || s.watched == on) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = s.fd.get();
  ::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s.fd.get(), &ev);
  s.watched = on;
}

void OutputRelay::adopt(const std::string& task, const std::string& home, UniqueFd read_end,
                        uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  Stream& s = streams_[task];
  watch(s, false);
  s = Stream{};
  s.home = home;
  s.fd = std::move(read_end);
  s.offset = offset;
  watch(s, true);
}

void OutputRelay::attach(const std::string& task, const std::string& home, UniqueFd read_end,
                         uint64_t offset) {
  keeper_.keep(task, read_end.get(), offset);
  adopt(task, home, std::move(read_end), offset);
}

bool OutputRelay::peek(Stream& s) {
  if (!s.fd || s.eof || !s.pending.empty()) return s.pending.empty();
  // tee() copies the pipe's first bytes without taking them out.
  ssize_t n = ::tee(s.fd.get(), scratch_w_.get(), kScratchBytes, SPLICE_F_NONBLOCK);
  if (n == 0) {
    s.eof = true;  // empty, and no writer left
    return true;
  }
  if (n < 0) return true;  // EAGAIN: nothing there now
  s.pending.resize(static_cast<size_t>(n));
  for (size_t got = 0; got < s.pending.size();) {
    ssize_t r = ::read(scratch_r_.get(), s.pending.data() + got, s.pending.size() - got);
    if (r <= 0) fail_errno(r < 0 ? errno : EIO, "output relay: cannot read peeked bytes");
    got += static_cast<size_t>(r);
  }
  return false;
}

bool OutputRelay::flush(const std::string& task, Stream& s) {
  if (s.pending.empty()) return true;
  try {
    uint64_t end = deliver_(task, s.home, s.offset, s.pending);
    if (end < s.offset + s.pending.size()) return false;
    // Delivered: now, and only now, the bytes may leave the pipe.
    s.offset = keeper_.consume(task, s.fd.get(), s.pending.size());
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
    for (int i = 0; i < n; i++)
      if (events[i].data.fd == wake_.get()) {
        uint64_t v;
        (void)::read(wake_.get(), &v, sizeof v);
      }
    for (auto& [task, s] : streams_) {
      peek(s);
      // Undelivered bytes stay in the pipe, which stays readable: stop watching it until they
      // are delivered (retried on every turn of this loop), or the loop would spin.
      bool delivered = flush(task, s);
      watch(s, delivered && !s.eof);
    }
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
      bool empty = peek(s);
      delivered = flush(task, s);
      if (delivered && empty) return s.offset;
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
  watch(it->second, false);
  streams_.erase(it);
  keeper_.drop(task);
}

}  // namespace ferry::node
