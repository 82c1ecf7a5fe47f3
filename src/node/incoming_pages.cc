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
// In the lazy phase the source sends a heartbeat every second it has nothing else to send: this
// much silence means the link is broken (the source then reconnects, if it can).
constexpr int kLazySilenceMs = 3000;
// How many generations ahead of ours a reconnecting source may be (each of its failed attempts
// to reconnect counts one).
constexpr uint32_t kMaxGenerationSkew = 64;

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

bool Daemon::take_resumed_stream(const transfer::Token& token, UniqueFd& sock) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  for (auto& [id, m] : sessions_) {
    std::lock_guard<std::mutex> l(m->mu);
    if (!m->pager || m->pager->finished()) continue;  // not in a lazy phase
    uint32_t base = m->resumed_generation;
    for (uint32_t g = base + 1; g <= base + kMaxGenerationSkew; g++) {
      transfer::Token want = transfer::resume_token(m->key, g);
      if (CRYPTO_memcmp(want.data(), token.data(), token.size()) != 0) continue;
      m->resumed = std::move(sock);
      m->resumed_generation = g;
      m->cv.notify_all();
      spdlog::info("task {}: the source reconnected its page stream", m->task.id());
      return true;
    }
  }
  return false;
}

bool Daemon::wait_for_source(IncomingMigration& m, transfer::StreamReceiver& rx,
                             const std::string& why) {
  spdlog::warn("task {}: page stream from {} broke ({}); waiting up to {} s for it to come back",
               m.task.id(), m.source_node, why, cfg_.lazy_timeout_ms / 1000);
  rx.break_off();  // (so that the source notices too, if it has not)
  Stopwatch waited;
  uint64_t refusing_since = 0;  // since when the source refuses all connections
  while (!stopping_ && waited.elapsed_ms() < cfg_.lazy_timeout_ms) {
    {
      std::unique_lock<std::mutex> lock(m.mu);
      m.awaiting_resume = true;
      m.cv.wait_for(lock, std::chrono::seconds(1), [&] { return m.resumed.has_value(); });
      if (m.resumed) {
        UniqueFd sock = std::move(*m.resumed);
        m.resumed.reset();
        m.awaiting_resume = false;
        rx.replace_socket(std::move(sock), m.resumed_generation);
        m.stream_fd = rx.fd();  // (what tear_down breaks off)
        spdlog::info("task {}: page stream back after {:.1f} s", m.task.id(),
                     waited.elapsed_ms() / 1000);
        return true;
      }
    }
    // Only a source that says it no longer has the task's memory is known dead; one that does
    // not answer may be behind a partition.
    rpc::MigrationStatusRequest q;
    q.set_session_id(m.id);
    rpc::MigrationStatusReply st;
    auto ctx = deadline_ms(1000);
    if (!peers_.known(m.source_node)) return false;
    if (peers_.stub(m.source_node).MigrationStatus(ctx.get(), q, &st).ok()) {
      refusing_since = 0;
      if (st.state() != "serving") {
        spdlog::warn("task {}: its source {} no longer holds its memory", m.task.id(),
                     m.source_node);
        return false;
      }
    } else if (refuses_connections(peers_.address(m.source_node))) {
      if (!refusing_since) refusing_since = monotonic_ns();
      if (monotonic_ns() - refusing_since >= kDeadAfterRefusingMs * 1000000ull) {
        spdlog::warn("task {}: the ferryd of its source {} is gone", m.task.id(), m.source_node);
        return false;
      }
    } else {
      refusing_since = 0;
    }
  }
  return false;
}

void Daemon::receive_stream(UniqueFd sock) {
  std::shared_ptr<IncomingMigration> m;
  try {
    transfer::Token token = transfer::read_token(sock.get(), 5000);
    if (take_resumed_stream(token, sock)) return;
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
    if (error.empty() && m->strategy->lazy_from_source()) {
      m->cv.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs),
                     [&] { return m->pager || (m->state != "received" && m->state != "ready"); });
      if (m->pager) {
        lock.unlock();
        std::string lazy_error;
        try {
          transfer::LazyPhaseOptions options;
          options.silence_ms = kLazySilenceMs;
          options.reconnect = [&](const std::string& why) { return wait_for_source(*m, rx, why); };
          transfer::LazyStats st = transfer::run_remote_lazy_phase(rx, *m->pager, options);
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
  if (m.strategy->sends_rounds()) {
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

std::string lazy_memory_name(const IncomingMigration& m) {
  return "uffd:" + m.id + ":" + m.task.id();
}

void Daemon::end_lazy_phase(IncomingMigration& m, const std::string& error) {
  // Every page is here (or the task is dead): nothing for ferry-init to hold any more.
  if (init_.active()) init_.drop(lazy_memory_name(m));
  std::unique_ptr<transfer::LazyPager> pager;
  std::unique_ptr<transfer::StoreLazySource> store;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.since_commit) m.last_page_ms = m.since_commit->elapsed_ms();
    if (error.empty()) {
      spdlog::info("task {}: every page is here ({:.1f} ms after Commit)", m.task.id(),
                   m.last_page_ms);
      if (m.state == "pulling") m.state = "running";
    } else {
      spdlog::warn("task {}: its pages could not come: {}", m.task.id(), error);
      m.error = error;
      m.state = m.state == "pulling" ? "lost" : "failed";
    }
    // The pager's thread and the page store's file go now, not with the session.
    pager = std::move(m.pager);
    store = std::move(m.store);
    m.cv.notify_all();
  }
  pager.reset();
  store.reset();
  if (!m.store_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(m.store_dir, ec);
  }
}

}  // namespace ferry::node
