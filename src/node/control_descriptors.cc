#include "node/control_descriptors.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "cr/provided.h"
#include "node/task_control.h"
#include "util/error.h"

namespace ferry::node {

ControlDescriptors::ControlDescriptors(Handler handler)
    : handler_(std::move(handler)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_ || !wake_) fail_errno(errno, "cannot serve control descriptors");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_.get();
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { loop(); });
}

ControlDescriptors::~ControlDescriptors() {
  stop_ = true;
  uint64_t one = 1;
  (void)::write(wake_.get(), &one, sizeof one);
  thread_.join();
  std::vector<Worker> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.thread.join();
  for (auto& [id, d] : by_task_) cr::remove_provided(d.task_inode);
}

ControlPair ControlDescriptors::make_pair() {
  return make_provided_pair(SOCK_STREAM);
}

void ControlDescriptors::watch(Descriptor& d, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = d.fd.get();
  ::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, d.fd.get(), &ev);
}

void ControlDescriptors::serve(const std::string& task_id, ControlPair& pair,
                               const std::string& first) {
  cr::add_provided_socket(pair.task_inode, cr::kProvidedControl);
  std::lock_guard<std::mutex> lock(mu_);
  auto old = by_task_.find(task_id);
  if (old != by_task_.end()) {
    watch(old->second, false);
    cr::remove_provided(old->second.task_inode);
    by_task_.erase(old);
  }
  Descriptor& d = by_task_[task_id];
  d.fd = std::move(pair.node_side);
  d.task_inode = pair.task_inode;
  if (!first.empty()) (void)::send(d.fd.get(), first.data(), first.size(), MSG_NOSIGNAL);
  watch(d, true);
}

void ControlDescriptors::reply(const std::string& task_id, const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_task_.find(task_id);
  if (it == by_task_.end()) return;  // it left or ended meanwhile
  Descriptor& d = it->second;
  // A reply is short and the task's end empty (it waits for it): this does not block.
  (void)::send(d.fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  d.busy = false;
  next_request(task_id, d);
  if (!d.busy) watch(d, true);
}

void ControlDescriptors::drop(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_task_.find(task_id);
  if (it == by_task_.end()) return;
  if (!it->second.busy) watch(it->second, false);
  cr::remove_provided(it->second.task_inode);
  by_task_.erase(it);
}

// A whole line waiting in `pending` goes to the handler (the descriptor is not read meanwhile).
void ControlDescriptors::next_request(const std::string& task_id, Descriptor& d) {
  auto nl = d.pending.find('\n');
  if (nl == std::string::npos) return;
  std::string line = d.pending.substr(0, nl);
  d.pending.erase(0, nl + 1);
  if (d.overlong) {  // the end of a line already refused
    d.overlong = false;
    return next_request(task_id, d);
  }
  d.busy = true;
  std::erase_if(workers_, [](Worker& w) {
    if (!*w.done) return false;
    w.thread.join();
    return true;
  });
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back({std::thread([this, task_id, line, done] {
                        handler_(task_id, line);
                        *done = true;
                      }),
                      done});
}

void ControlDescriptors::read_from(const std::string& task_id, Descriptor& d) {
  char buf[4096];
  ssize_t n = ::recv(d.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    watch(d, false);  // the task closed it, or ended
    cr::remove_provided(d.task_inode);
    by_task_.erase(task_id);
    return;
  }
  if (n < 0) return;
  d.pending.append(buf, static_cast<size_t>(n));
  if (d.pending.find('\n') == std::string::npos && d.pending.size() > kMaxControlLine &&
      !d.overlong) {
    d.pending.clear();
    d.overlong = true;
    std::string r = reply_refused(fmt::format("a request is at most {} bytes", kMaxControlLine));
    (void)::send(d.fd.get(), r.data(), r.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return;
  }
  if (d.overlong && d.pending.find('\n') == std::string::npos) d.pending.clear();
  next_request(task_id, d);
  if (d.busy) watch(d, false);
}

void ControlDescriptors::loop() {
  epoll_event events[32];
  while (!stop_) {
    int n = ::epoll_wait(epoll_.get(), events, 32, 1000);
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == wake_.get()) continue;
      for (auto& [id, d] : by_task_)
        if (d.fd.get() == fd) {
          std::string task_id = id;  // (read_from may erase the entry)
          read_from(task_id, d);
          break;
        }
    }
  }
}

}  // namespace ferry::node
