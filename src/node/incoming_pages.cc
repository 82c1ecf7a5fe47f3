// The destination's page stream: one thread per incoming migration reads it and puts every
// verified frame in place. Pre-copy rounds go into the first layout; after the last round the
// thread pauses until the final tasking message has rebuilt the layout; then the pages sent while
// the task was frozen; then, for strategies whose pages come after Commit, the lazy phase.
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "util/clock.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr int kWaitForLayoutMs = 120000;
// The source pushes without pause in the lazy phase; this much silence means it is gone.
constexpr int kLazySilenceMs = 15000;

}  // namespace

void Daemon::data_accept_loop() {
  while (!stopping_) {
    pollfd p{data_listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    int fd = ::accept4(data_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::thread([this, fd] { receive_stream(UniqueFd(fd)); }).detach();
  }
}

void Daemon::receive_stream(UniqueFd sock) {
  std::shared_ptr<IncomingMigration> m;
  try {
    transfer::Token token = transfer::read_token(sock.get(), 5000);
    std::lock_guard<std::mutex> lock(sessions_mu_);
    for (auto& [id, s] : sessions_)
      if (!s->token_used && CRYPTO_memcmp(s->token.data(), token.data(), token.size()) == 0) m = s;
    if (!m) {
      spdlog::warn("page stream with an unknown token refused");
      return;
    }
    m->token_used = true;
  } catch (const std::exception& e) {
    spdlog::warn("page stream refused: {}", e.what());
    return;
  }
  {
    // The data is put in place directly: wait until a layout exists.
    std::unique_lock<std::mutex> lock(m->mu);
    m->cv.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs), [&] {
      return m->state != "offered" && m->state != "building" && m->state != "preparing" &&
             m->state != "prepared";
    });
    if (m->state != "receiving" && m->state != "rounds") return;
    m->receiving = true;
    m->stream_fd = sock.get();
  }
  std::string error;
  transfer::StreamReceiver rx(std::move(sock), m->key, m->limit);
  try {
    receive_pages(*m, rx);
  } catch (const std::exception& e) {
    error = e.what();
    spdlog::warn("page stream of {} failed: {}", m->task.id(), error);
  }
  {
    std::unique_lock<std::mutex> lock(m->mu);
    if (m->state == "receiving" || m->state == "rounds" || m->state == "building") {
      m->state = error.empty() ? "received" : "failed";
      m->error = error;
      m->cv.notify_all();
    }
    // Strategies with pages after Commit go on once the tasking message made the pager.
    if (error.empty() && transfer::has_lazy_phase(m->strategy) &&
        m->strategy != transfer::Strategy::kFlushing) {
      m->cv.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs),
                     [&] { return m->pager || (m->state != "received" && m->state != "ready"); });
      if (m->pager) {
        lock.unlock();
        std::string lazy_error;
        try {
          transfer::LazyStats st = transfer::run_remote_lazy_phase(rx, *m->pager, kLazySilenceMs);
          lock.lock();
          m->lazy_bytes = st.bytes;
          m->lazy_pages = st.pages;
          m->lazy_faults = st.faults;
          lock.unlock();
        } catch (const std::exception& e) {
          lazy_error = e.what();
        }
        end_lazy_phase(*m, lazy_error);
        lock.lock();
      }
    }
    m->receiving = false;
    m->stream_fd = -1;
    m->cv.notify_all();
  }
}

void Daemon::receive_pages(IncomingMigration& m, transfer::StreamReceiver& rx) {
  std::optional<Stopwatch> stream;
  auto on_data = [&](const image::PageTarget& t, const char* data, size_t len) {
    if (!stream) stream.emplace();
    m.builder->place(t, data, len);
  };
  if (m.strategy == transfer::Strategy::kPreCopy) {
    // Rounds, while the task still runs at the source. The last round's marker (aux 1) says the
    // final pages follow: wait until the final tasking message has rebuilt the layout for them.
    for (;;) {
      transfer::Frame f = rx.receive_until(transfer::frame_flags::kRoundEnd, on_data);
      std::unique_lock<std::mutex> lock(m.mu);
      m.rounds_received = static_cast<uint32_t>(f.target.addr);
      m.cv.notify_all();
      if (f.aux != 1) {
        rx.send_round_done(f.target.addr);  // the source times its rounds by this
        continue;
      }
      m.last_round_seen = true;
      m.cv.notify_all();
      m.cv.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs),
                    [&] { return m.state != "rounds" && m.state != "building"; });
      if (m.state != "receiving") fail("the migration was {}", m.state);
      break;
    }
    stream.reset();  // from here: the pages of the freeze
  }
  rx.receive_all(on_data);
  m.stream_ms = stream ? stream->elapsed_ms() : 0;
}

void Daemon::end_lazy_phase(IncomingMigration& m, const std::string& error) {
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.since_commit) m.last_page_ms = m.since_commit->elapsed_ms();
  if (!m.store_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(m.store_dir, ec);
  }
  if (error.empty()) {
    spdlog::info("task {}: every page is here ({:.1f} ms after Commit)", m.task.id(),
                 m.last_page_ms);
    if (m.state == "pulling") m.state = "running";
  } else {
    spdlog::warn("task {}: its pages could not come: {}", m.task.id(), error);
    m.error = error;
    m.state = m.state == "pulling" ? "lost" : "failed";
  }
  m.cv.notify_all();
}

}  // namespace ferry::node
