// The source's side of a lazy phase (eager-dirty, copy-on-reference): the frozen original serves
// its pages until the destination has them all. A page stream that breaks while both ends live
// (a cut link, a partition) is reconnected and the push starts over; only a destination that no
// longer has the task, or a link that stays down for lazy_timeout, ends it.
#include <optional>

#include <spdlog/spdlog.h>

#include "node/daemon.h"
#include "util/clock.h"

namespace ferry::node {
namespace {

// Whether the destination still waits for pages of this session.
enum class Destination { kWaits, kHasAll, kLostIt, kSilent };

}  // namespace

std::string Daemon::serve_lazy_pages(transfer::PageServer& server, transfer::StreamSender& sender,
                                     const std::atomic<bool>& stop, const std::string& to,
                                     const std::string& session, const std::string& data_address,
                                     const transfer::Key& key) {
  auto destination = [&] {
    rpc::MigrationStatusRequest q;
    q.set_session_id(session);
    rpc::MigrationStatusReply st;
    auto ctx = deadline_ms(1000);
    if (!peers_.stub(to).MigrationStatus(ctx.get(), q, &st).ok()) return Destination::kSilent;
    if (st.state() == "ready" || st.state() == "pulling" || st.state() == "received")
      return Destination::kWaits;
    if (st.state() == "running") return Destination::kHasAll;
    return Destination::kLostIt;
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
                 cfg_.lazy_timeout_ms / 1000);
    Stopwatch waited;
    uint64_t refusing_since = 0;  // since when the destination refuses all connections
    bool resumed = false;
    while (!resumed && !stop && waited.elapsed_ms() < cfg_.lazy_timeout_ms) {
      Destination d = destination();
      if (d == Destination::kHasAll) return "";
      if (d == Destination::kLostIt) return why + "; " + to + " no longer has the task";
      if (d == Destination::kSilent && refuses_connections(peers_.address(to))) {
        if (!refusing_since) refusing_since = monotonic_ns();
        if (monotonic_ns() - refusing_since >= kDeadAfterRefusingMs * 1000000ull)
          return why + "; the ferryd of " + to + " is gone (it refuses every connection)";
      } else {
        refusing_since = 0;
      }
      try {
        uint32_t generation = sender.generation() + 1;
        UniqueFd sock =
            transfer::connect_stream(data_address, transfer::resume_token(key, generation), 2000);
        sender.replace_socket(std::move(sock), generation);
        resumed = true;
      } catch (const std::exception& e) {
        // (Nothing was sent under that generation: the next attempt may use it again.)
        spdlog::debug("page stream to {}: not yet ({})", to, e.what());
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    if (!resumed) return why + fmt::format("; it did not come back within {} s",
                                           cfg_.lazy_timeout_ms / 1000);
    spdlog::info("page stream to {} back after {:.1f} s", to, waited.elapsed_ms() / 1000);
    server.restart_push();
  }
}

}  // namespace ferry::node
