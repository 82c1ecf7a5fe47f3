#include "node/init_link.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>

#include <spdlog/spdlog.h>

#include "nodeinit/init_protocol.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr int kHelloTimeoutMs = 5000;
constexpr int kConsumeTimeoutMs = 5000;

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

uint64_t number(const std::string& s) {
  return std::strtoull(s.c_str(), nullptr, 10);
}

}  // namespace

InitLink::InitLink() {
  const char* e = std::getenv(init::kFdEnv);
  if (!e || !*e) return;
  int fd = std::atoi(e);
  ::unsetenv(init::kFdEnv);  // tasks started from here must not inherit the name
  if (fd < 3 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    spdlog::warn("{}={} is not a descriptor: running without ferry-init", init::kFdEnv, e);
    return;
  }
  sock_.reset(fd);
  // Everything the init kept, up to "ready".
  for (;;) {
    std::string msg;
    UniqueFd got;
    if (!receive(&msg, &got, kHelloTimeoutMs)) fail("ferry-init did not say what it kept");
    if (msg == "ready") break;
    handle(msg, std::move(got));
  }
  reader_ = std::thread([this] { read_loop(); });
}

InitLink::~InitLink() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  if (sock_) ::shutdown(sock_.get(), SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
}

bool InitLink::receive(std::string* msg, UniqueFd* fd, int timeout_ms) {
  pollfd p{sock_.get(), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  int got = -1;
  bool ok = init::receive_message(sock_.get(), msg, &got);
  fd->reset(got);
  return ok;
}

void InitLink::handle(const std::string& msg, UniqueFd fd) {
  auto w = words(msg);
  if (w.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (w[0] == "hello" && w.size() >= 3) {
    init_id_ = w[1];
    starts_ = static_cast<unsigned>(number(w[2]));
  } else if (w[0] == "kept" && w.size() >= 3 && fd) {
    kept_[w[1]] = KeptPipe{std::move(fd), number(w[2])};
  } else if (w[0] == "exit" && w.size() >= 4) {
    OrphanExit e{static_cast<pid_t>(number(w[1])), number(w[2]),
                 static_cast<int>(std::strtol(w[3].c_str(), nullptr, 10))};
    exits_.push_back(e);
    cv_.notify_all();
  } else if (w[0] == "consumed" && w.size() >= 3) {
    consumed_[w[1]] = number(w[2]);
    cv_.notify_all();
  }
}

void InitLink::read_loop() {
  for (;;) {
    std::string msg;
    UniqueFd fd;
    bool ok = receive(&msg, &fd, 500);
    std::function<void(const OrphanExit&)> handler;
    std::deque<OrphanExit> exits;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    if (ok) handle(msg, std::move(fd));
    {
      std::lock_guard<std::mutex> lock(mu_);
      handler = on_exit_;
      if (handler) exits.swap(exits_);
    }
    for (auto& e : exits) handler(e);
  }
}

std::map<std::string, InitLink::KeptPipe> InitLink::take_kept() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(kept_, {});
}

void InitLink::on_exit(std::function<void(const OrphanExit&)> handler) {
  std::deque<OrphanExit> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_exit_ = handler;
    pending.swap(exits_);
  }
  for (auto& e : pending) handler(e);
}

void InitLink::send(const std::string& msg, int fd) {
  if (!active()) return;
  std::lock_guard<std::mutex> lock(send_mu_);
  if (!init::send_message(sock_.get(), msg, fd)) fail_errno(errno, "cannot reach ferry-init");
}

void InitLink::forget(const OrphanExit& e) {
  send(fmt::format("forget {} {}", e.pid, e.start_ticks));
}

void InitLink::keep(const std::string& task, int fd, uint64_t offset) {
  send(fmt::format("keep {} {}", task, offset), fd);
}

void InitLink::drop(const std::string& task) {
  send("drop " + task);
}

bool InitLink::drop_and_wait(const std::string& task) {
  drop(task);
  // The init answers in order: the answer to a consume of nothing comes once the drop is done.
  try {
    consume(task, -1, 0);
    return true;
  } catch (const std::exception& e) {
    spdlog::warn("ferry-init: {}", e.what());
    return false;
  }
}

uint64_t InitLink::consume(const std::string& task, int, uint64_t n) {
  std::lock_guard<std::mutex> one(consume_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  consumed_.erase(task);
  lock.unlock();
  send(fmt::format("consume {} {}", task, n));
  lock.lock();
  if (!cv_.wait_for(lock, std::chrono::milliseconds(kConsumeTimeoutMs),
                    [&] { return consumed_.count(task) > 0; }))
    fail("ferry-init did not answer (consume {} bytes of {})", n, task);
  return consumed_[task];
}

// ---------------------------------------------------------------------------------------------

void LocalPipeKeeper::keep(const std::string& task, int, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  consumed_[task] = offset;
}

void LocalPipeKeeper::drop(const std::string& task) {
  std::lock_guard<std::mutex> lock(mu_);
  consumed_.erase(task);
}

uint64_t LocalPipeKeeper::consume(const std::string& task, int fd, uint64_t n) {
  char sink[65536];
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = ::read(fd, sink, std::min<uint64_t>(sizeof sink, n - done));
    if (r <= 0) break;
    done += static_cast<uint64_t>(r);
  }
  std::lock_guard<std::mutex> lock(mu_);
  return consumed_[task] += done;
}

}  // namespace ferry::node
