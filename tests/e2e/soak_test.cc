// ferryd keeps nothing per migration: one task migrated back and forth 140 times, all five
// strategies in turn. After a warm-up of 40 migrations (allocators and caches), what each node's
// ferryd holds stays flat: threads, descriptors, no deleted file kept open, resident memory.
// (bench/soak_bench does the same 1,000 times and reports the figures.)
#include <gtest/gtest.h>

#include <filesystem>

#include "support/cluster.h"
#include "support/wait_until.h"

namespace ferry::test {
namespace {

struct Held {
  long threads = 0, fds = 0, deleted = 0, rss_kib = 0;
};

Held held_by(pid_t pid) {
  Held h;
  std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  auto field = [&](const char* key) {
    auto at = status.find(key);
    return at == std::string::npos ? 0L : std::stol(status.substr(at + std::strlen(key)));
  };
  h.threads = field("Threads:");
  h.rss_kib = field("VmRSS:");
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    h.fds++;
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec).string().find(" (deleted)") !=
        std::string::npos)
      h.deleted++;
  }
  return h;
}

}  // namespace

TEST(SoakTest, WhatFerrydHoldsStaysFlatOverAHundredMigrations) {
  TestCluster c(2);
  ASSERT_TRUE(c.up());
  std::string id = c.run({target_path("t_worker"), "4", "50"}, "node1");
  ASSERT_TRUE(wait_until([&] { return c.logs(id).find("line 2\n") != std::string::npos; }, 10000));
  const std::vector<std::string>& strategies = all_strategies();
  const std::string nodes[2] = {"node1", "node2"};
  pid_t ferryd[2] = {c.ferryd_pid("node1"), c.ferryd_pid("node2")};
  ASSERT_GT(ferryd[0], 0);
  ASSERT_GT(ferryd[1], 0);
  int done = 0;
  auto migrate = [&](int n) {
    for (int k = 0; k < n; k++, done++) {
      nlohmann::json r = c.migrate(id, nodes[(done + 1) % 2], "",
                                   {"--strategy", strategies[done % strategies.size()]});
      ASSERT_TRUE(r.value("ok", false)) << "migration " << done << ": " << r.dump();
    }
  };
  // Finished sessions are released within a second: wait until the threads are back to what
  // an idle ferryd has, then look.
  const Held idle[2] = {held_by(ferryd[0]), held_by(ferryd[1])};
  auto settled = [&](int n) {
    wait_until([&] { return held_by(ferryd[n]).threads <= idle[n].threads + 2; }, 5000);
    return held_by(ferryd[n]);
  };
  migrate(40);
  Held warm[2] = {settled(0), settled(1)};
  migrate(50);
  Held mid[2] = {settled(0), settled(1)};
  migrate(50);
  Held end[2] = {settled(0), settled(1)};
  for (int n = 0; n < 2; n++) {
    SCOPED_TRACE(nodes[n]);
    EXPECT_LE(end[n].threads, warm[n].threads + 2);
    EXPECT_LE(end[n].fds, warm[n].fds + 2);
    EXPECT_EQ(end[n].deleted, 0) << "a deleted file (a page store) is held open";
    // A leak of even 60 KiB per migration would show as 3 MiB over the last 50.
    EXPECT_LE(end[n].rss_kib - mid[n].rss_kib, 3 * 1024)
        << "RSS " << warm[n].rss_kib << " -> " << mid[n].rss_kib << " -> " << end[n].rss_kib
        << " KiB";
  }
  ASSERT_EQ(c.ferry({"kill", id, "USR2"}).status, 0);
  EXPECT_EQ(c.ferry({"wait", id, "--timeout", "30"}).status, 0) << "its memory is not intact";
}

}  // namespace ferry::test
