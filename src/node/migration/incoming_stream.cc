// The destination's page stream: one thread per incoming migration reads it and puts every
// verified frame in place. Pre-copy rounds go into the first layout; after the last round the
// thread pauses until the final tasking message has rebuilt the layout; then the pages sent while
// the task was frozen; then, for strategies whose pages come after Commit, the lazy phase.
#include <openssl/crypto.h>
#include <sys/socket.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "node/migration/incoming.h"
#include "node/states.h"
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

bool IncomingMigration::claim_stream(const transfer::Token& token) {
  std::lock_guard<std::mutex> lock(mu_);
  if (token_used_ || CRYPTO_memcmp(token_.data(), token.data(), token.size()) != 0) return false;
  token_used_ = true;
  return true;
}

bool IncomingMigration::take_resumed_stream(const transfer::Token& token, UniqueFd& sock) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pager_ || pager_->finished()) return false;  // not in a lazy phase
  uint32_t base = resumed_generation_;
  for (uint32_t g = base + 1; g <= base + kMaxGenerationSkew; g++) {
    transfer::Token want = transfer::resume_token(key_, g);
    if (CRYPTO_memcmp(want.data(), token.data(), token.size()) != 0) continue;
    resumed_ = std::move(sock);
    resumed_generation_ = g;
    cv_.notify_all();
    spdlog::info("task {}: the source reconnected its page stream", task_.id());
    return true;
  }
  return false;
}

void IncomingMigration::receive(UniqueFd sock) {
  {
    // The data is put in place directly: wait until a layout exists.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs), [&] {
      return state_ != rpc::MIGRATION_OFFERED && state_ != rpc::MIGRATION_BUILDING &&
             state_ != rpc::MIGRATION_PREPARING && state_ != rpc::MIGRATION_PREPARED;
    });
    if (state_ != rpc::MIGRATION_RECEIVING && state_ != rpc::MIGRATION_ROUNDS) return;
    receiving_ = true;
    stream_fd_ = sock.get();
  }
  std::string error;
  transfer::StreamReceiver rx(std::move(sock), key_, limit_);
  try {
    receive_pages(rx);
  } catch (const std::exception& e) {
    error = e.what();
    spdlog::warn("page stream of {} failed: {}", task_.id(), error);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == rpc::MIGRATION_RECEIVING || state_ == rpc::MIGRATION_ROUNDS ||
        state_ == rpc::MIGRATION_BUILDING) {
      state_ = error.empty() ? rpc::MIGRATION_RECEIVED : rpc::MIGRATION_FAILED;
      error_ = error;
      cv_.notify_all();
    }
  }
  // Strategies with pages after Commit go on once the tasking message made the pager.
  if (error.empty() && strategy_.lazy_from_source()) run_lazy_phase(rx);
  std::lock_guard<std::mutex> lock(mu_);
  receiving_ = false;
  stream_fd_ = -1;
  cv_.notify_all();
}

void IncomingMigration::receive_pages(transfer::StreamReceiver& rx) {
  std::optional<Stopwatch> stream;
  auto on_data = [&](const image::PageTarget& t, const char* data, size_t len) {
    if (!stream) stream.emplace();
    builder_->place(t, data, len);
  };
  if (strategy_.sends_rounds()) {
    // Rounds, while the task still runs at the source. The last round's marker (aux 1) says the
    // final pages follow: wait until the final tasking message has rebuilt the layout for them.
    for (;;) {
      transfer::Frame f = rx.receive_until(transfer::frame_flags::kRoundEnd, on_data);
      std::unique_lock<std::mutex> lock(mu_);
      rounds_received_ = static_cast<uint32_t>(f.target.addr);
      cv_.notify_all();
      if (f.aux != 1) {
        rx.send_round_done(f.target.addr);  // the source times its rounds by this
        continue;
      }
      last_round_seen_ = true;
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs), [&] {
        return state_ != rpc::MIGRATION_ROUNDS && state_ != rpc::MIGRATION_BUILDING;
      });
      if (state_ != rpc::MIGRATION_RECEIVING) fail("the migration was {}", name_of(state_));
      break;
    }
    stream.reset();  // from here: the pages of the freeze
  }
  rx.receive_all(on_data);
  stream_ms_ = stream ? stream->elapsed_ms() : 0;
}

void IncomingMigration::run_lazy_phase(transfer::StreamReceiver& rx) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(kWaitForLayoutMs), [&] {
      return pager_ || (state_ != rpc::MIGRATION_RECEIVED && state_ != rpc::MIGRATION_READY);
    });
    if (!pager_) return;
  }
  std::string error;
  try {
    transfer::LazyPhaseOptions options;
    options.silence_ms = kLazySilenceMs;
    options.reconnect = [&](const std::string& why) { return wait_for_source(rx, why); };
    transfer::LazyStats st = transfer::run_remote_lazy_phase(rx, *pager_, options);
    std::lock_guard<std::mutex> lock(mu_);
    lazy_bytes_ = st.bytes;
    lazy_pages_ = st.pages;
    lazy_faults_ = st.faults;
  } catch (const std::exception& e) {
    error = e.what();
  }
  end_lazy_phase(error);
}

bool IncomingMigration::wait_for_source(transfer::StreamReceiver& rx, const std::string& why) {
  spdlog::warn("task {}: page stream from {} broke ({}); waiting up to {} s for it to come back",
               task_.id(), source_node_, why, node_.cfg.lazy_timeout_ms / 1000);
  rx.break_off();  // (so that the source notices too, if it has not)
  Stopwatch waited;
  uint64_t refusing_since = 0;  // since when the source refuses all connections
  while (!node_.stopping && waited.elapsed_ms() < node_.cfg.lazy_timeout_ms) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      awaiting_resume_ = true;
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return resumed_.has_value(); });
      if (resumed_) {
        UniqueFd sock = std::move(*resumed_);
        resumed_.reset();
        awaiting_resume_ = false;
        rx.replace_socket(std::move(sock), resumed_generation_);
        stream_fd_ = rx.fd();  // (what tear_down breaks off)
        spdlog::info("task {}: page stream back after {:.1f} s", task_.id(),
                     waited.elapsed_ms() / 1000);
        return true;
      }
    }
    // Only a source that says it no longer has the task's memory is known dead; one that does
    // not answer may be behind a partition.
    if (!node_.peers.known(source_node_)) return false;
    rpc::MigrationStatusRequest q;
    q.set_session_id(id_);
    rpc::MigrationStatusReply st;
    auto ctx = deadline_ms(1000);
    if (node_.peers.stub(source_node_).MigrationStatus(ctx.get(), q, &st).ok()) {
      refusing_since = 0;
      if (st.state() != rpc::MIGRATION_SERVING) {
        spdlog::warn("task {}: its source {} no longer holds its memory", task_.id(), source_node_);
        return false;
      }
    } else if (refuses_connections(node_.peers.address(source_node_))) {
      if (!refusing_since) refusing_since = monotonic_ns();
      if (monotonic_ns() - refusing_since >= kDeadAfterRefusingMs * 1000000ull) {
        spdlog::warn("task {}: the ferryd of its source {} is gone", task_.id(), source_node_);
        return false;
      }
    } else {
      refusing_since = 0;
    }
  }
  return false;
}

void IncomingMigration::end_lazy_phase(const std::string& error) {
  // Every page is here (or the task is dead): nothing for ferry-init to hold any more. Its copy
  // of the userfaultfd and the pager's are closed before the session says the pages came: until
  // the last copy is closed the task's memory stays registered, and a snapshot told it may
  // record the task would find it so.
  std::unique_ptr<transfer::LazyPager> pager;
  std::unique_ptr<transfer::StoreLazySource> store;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (since_commit_) last_page_ms_ = since_commit_->elapsed_ms();
    pager = std::move(pager_);
    store = std::move(store_);
  }
  if (node_.init.active()) node_.init.drop_and_wait(lazy_memory_name());
  pager.reset();
  store.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (error.empty()) {
      spdlog::info("task {}: every page is here ({:.1f} ms after Commit)", task_.id(),
                   last_page_ms_);
      if (state_ == rpc::MIGRATION_PULLING) state_ = rpc::MIGRATION_RUNNING;
    } else {
      spdlog::warn("task {}: its pages could not come: {}", task_.id(), error);
      error_ = error;
      state_ = state_ == rpc::MIGRATION_PULLING ? rpc::MIGRATION_LOST : rpc::MIGRATION_FAILED;
    }
    cv_.notify_all();
  }
  if (!store_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(store_dir_, ec);
  }
}

}  // namespace ferry::node
