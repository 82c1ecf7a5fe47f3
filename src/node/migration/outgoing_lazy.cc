// The source's side of a lazy phase (eager-dirty, copy-on-reference): the frozen original serves
// its pages until the destination has them all. A page stream that breaks while both ends live
// (a cut link, a partition) is reconnected and the push starts over; only a destination that no
// longer has the task, or a link that stays down for lazy_timeout, ends it.
#include <optional>

#include <spdlog/spdlog.h>

#include "node/migration/outgoing.h"
#include "util/clock.h"

namespace ferry::node {
namespace {

// Whether the destination still waits for pages of this session.
enum class Destination { kWaits, kHasAll, kLostIt, kSilent };

}  // namespace

// Serves pages until the destination has them all (returns "") or they cannot come any more
// (returns why).
std::string OutgoingMigration::serve_lazy_pages() {
  transfer::PageServer& server = *server_;
  transfer::StreamSender& sender = *sender_;
  const std::atomic<bool>& stop = server_stop_;
  const std::string& to = to_;
  const uint32_t timeout_ms = node_.cfg.lazy_timeout_ms;
  auto destination = [&] {
    bool answered = false;
    rpc::MigrationStatusReply st = destination_status(1000, &answered);
    if (!answered) return Destination::kSilent;
    switch (st.state()) {
      case rpc::MIGRATION_READY:
      case rpc::MIGRATION_PULLING:
      case rpc::MIGRATION_RECEIVED:
        return Destination::kWaits;
      case rpc::MIGRATION_RUNNING:
        return Destination::kHasAll;
      default:
        return Destination::kLostIt;
    }
  };
  for (;;) {
    std::string why;
    try {
      server.run(stop);
      return "";
    } catch (const transfer::StreamBroken& e) {
      why = e.what();
    } catch (const std::exception& e) {
      return e.what();
    }
    spdlog::warn("page stream to {} broke ({}); reconnecting for up to {} s", to, why,
                 timeout_ms / 1000);
    Stopwatch waited;
    uint64_t refusing_since = 0;  // since when the destination refuses all connections
    bool resumed = false;
    while (!resumed && !stop && waited.elapsed_ms() < timeout_ms) {
      Destination d = destination();
      if (d == Destination::kHasAll) return "";
      if (d == Destination::kLostIt) return why + "; " + to + " no longer has the task";
      if (d == Destination::kSilent && refuses_connections(node_.peers.address(to))) {
        if (!refusing_since) refusing_since = monotonic_ns();
        if (monotonic_ns() - refusing_since >= kDeadAfterRefusingMs * 1000000ull)
          return why + "; the ferryd of " + to + " is gone (it refuses every connection)";
      } else {
        refusing_since = 0;
      }
      try {
        uint32_t generation = sender.generation() + 1;
        UniqueFd sock =
            transfer::connect_stream(data_address_, transfer::resume_token(key_, generation), 2000);
        sender.replace_socket(std::move(sock), generation);
        resumed = true;
      } catch (const std::exception& e) {
        // (Nothing was sent under that generation: the next attempt may use it again.)
        spdlog::debug("page stream to {}: not yet ({})", to, e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    if (!resumed) return why + fmt::format("; it did not come back within {} s", timeout_ms / 1000);
    spdlog::info("page stream to {} back after {:.1f} s", to, waited.elapsed_ms() / 1000);
    server.restart_push();
  }
}

}  // namespace ferry::node
