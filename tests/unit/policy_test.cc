// The Starter's rules and settings (policy/rules.h, policy/settings.h) as pure functions.
#include <gtest/gtest.h>

#include "policy/events.h"
#include "policy/rules.h"
#include "policy/settings.h"

namespace ferry::policy {
namespace {

NodeView node(const std::string& name, double capacity, double demand) {
  NodeView n;
  n.name = name;
  n.capacity = capacity;
  n.demand = demand;
  return n;
}

TaskView task(const std::string& id, double demand, uint64_t age_ms, uint64_t rss = 1 << 20) {
  TaskView t;
  t.id = id;
  t.demand = demand;
  t.age_ms = t.stay_ms = age_ms;
  t.rss = rss;
  return t;
}

TEST(PolicyRulesTest, AMoveNeedsTheDestinationClearlyLessLoadedThanTheSource) {
  LoadSharingRules r;
  NodeView src = node("a", 0.5, 6);
  std::vector<NodeView> all{src, node("b", 0.5, 0), node("c", 0.5, 2)};
  std::map<std::string, std::string> why;
  auto dests = rank_destinations(task("t", 1, 10000), src, all, r, &why);
  ASSERT_EQ(dests.size(), 2u);
  EXPECT_EQ(dests[0], "b");  // most room first
  // Balanced: 2 and 2 on equal nodes; moving would make the destination as loaded as the source.
  NodeView even = node("a", 0.5, 2);
  auto none = rank_destinations(task("t", 1, 10000), even, {even, node("b", 0.5, 2)}, r, &why);
  EXPECT_TRUE(none.empty());
  EXPECT_NE(why["b"].find("as loaded"), std::string::npos) << why["b"];
}

TEST(PolicyRulesTest, NoMoveIsEverWorthMakingBackAgain) {
  // Whatever the loads, if a->b passes the rule, b->a (after the move) does not.
  LoadSharingRules r;
  for (double da = 0; da <= 8; da += 0.5)
    for (double db = 0; db <= 8; db += 0.5) {
      NodeView a = node("a", 0.5, da), b = node("b", 1.5, db);
      if (rank_destinations(task("t", 1, 10000), a, {a, b}, r, nullptr).empty()) continue;
      a.demand -= 1;
      b.demand += 1;
      EXPECT_TRUE(rank_destinations(task("t", 1, 10000), b, {a, b}, r, nullptr).empty())
          << da << " " << db;
    }
}

TEST(PolicyRulesTest, CandidatesAreCpuBoundOldEnoughSettledAndMovable) {
  LoadSharingRules r;
  std::vector<TaskView> ts{task("young", 1, 500), task("idle", 0.1, 60000),
                           task("big", 1, 60000, 512u << 20), task("small", 1, 60000)};
  ts.push_back(task("stuck", 1, 60000));
  ts.back().unmovable = "threads";
  ts.push_back(task("arrived", 1, 60000));
  ts.back().came_from = "b";
  ts.back().stay_ms = 1000;
  auto c = rank_candidates(ts, r);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].id, "small");  // the same gain for less to carry
  EXPECT_EQ(c[1].id, "big");
  EXPECT_GT(move_score(task("old", 1, 600000)), move_score(task("new", 1, 3000)));
}

TEST(PolicyRulesTest, DestinationsWithoutLabelsMemoryOrThatAreDrainingAreLeftOutWithAReason) {
  LoadSharingRules r;
  NodeView src = node("a", 0.5, 6);
  NodeView drain = node("b", 1, 0), small = node("c", 1, 0), nolabel = node("d", 1, 0),
           back = node("e", 1, 0);
  drain.draining = true;
  small.mem_limit = 8 << 20;
  small.mem_used = 4 << 20;
  TaskView t = task("t", 1, 10000, 16 << 20);
  t.labels["gpu"] = "1";
  t.came_from = "e";
  for (NodeView* n : {&drain, &small, &back}) n->labels["gpu"] = "1";
  std::map<std::string, std::string> why;
  EXPECT_TRUE(rank_destinations(t, src, {src, drain, small, nolabel, back}, r, &why).empty());
  EXPECT_EQ(why["b"], "draining");
  EXPECT_EQ(why["c"], "not enough memory");
  EXPECT_NE(why["d"].find("gpu=1"), std::string::npos);
  EXPECT_NE(why["e"].find("came from"), std::string::npos);
}

TEST(PolicyRulesTest, TheDestinationDecidesWithItsOwnLoad) {
  NodeView self = node("b", 0.5, 0);
  EXPECT_EQ(refuse_proposal(self, 1, 12, 1 << 20, 0.25), "");
  self.reserved = 4;  // it accepted others meanwhile
  EXPECT_NE(refuse_proposal(self, 1, 6, 1 << 20, 0.25).find("over capacity"), std::string::npos);
  self.reserved = 0;
  self.draining = true;
  EXPECT_NE(refuse_proposal(self, 1, 12, 1 << 20, 0.25).find("draining"), std::string::npos);
}

TEST(PolicySettingsTest, SettingsAreCheckedAndVersioned) {
  rpc::PolicySettings s;
  EXPECT_FALSE(is_on(s, kLoadSharing));
  EXPECT_DOUBLE_EQ(param(s, kLoadSharing, "overload"), 1.1);
  rpc::PolicySetRequest req;
  req.set_name(kLoadSharing);
  req.set_on(true);
  (*req.mutable_params())["margin"] = "0.5";
  rpc::PolicySettings t = apply(s, req, 1000);
  EXPECT_TRUE(is_on(t, kLoadSharing));
  EXPECT_DOUBLE_EQ(param(t, kLoadSharing, "margin"), 0.5);
  EXPECT_EQ(t.version(), 1000u);
  EXPECT_GT(apply(t, req, 5).version(), t.version());  // newer even with a clock behind
  req.set_name("teleport");
  EXPECT_THROW(apply(s, req, 1), std::exception);
  req.set_name(kAffinity);
  (*req.mutable_params())["margin"] = "1";  // not affinity's
  EXPECT_THROW(apply(s, req, 1), std::exception);
  req.mutable_params()->clear();
  (*req.mutable_params())["min_rate_kbs"] = "fast";
  EXPECT_THROW(apply(s, req, 1), std::exception);
  rpc::PolicySettings shown = with_defaults(t);
  EXPECT_EQ(shown.policies_size(), 4);
}

TEST(PolicyEventsTest, EventsAreStampedKeptInOrderAndDescribed) {
  EventLog log("node1");
  rpc::PolicyEvent e;
  e.set_kind("moved");
  e.set_task("node1.3");
  e.set_to("node2");
  e.set_freeze_ms(12.5);
  e.set_reason("in 40 ms");
  log.add(e);
  auto all = log.after(0);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].node(), "node1");
  EXPECT_EQ(all[0].from(), "node1");
  EXPECT_EQ(all[0].seq(), 1u);
  EXPECT_TRUE(log.after(all[0].unix_ms()).empty());
  std::string line = describe(all[0]);
  EXPECT_NE(line.find("moved node1.3 node1->node2 frozen 12.5 ms: in 40 ms"), std::string::npos)
      << line;
}

}  // namespace
}  // namespace ferry::policy
