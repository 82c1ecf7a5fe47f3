// The Starter's rules as pure functions of what it knows, so that each can be tested alone.
//
// Load is demand over capacity: demand is the CPUs a node's runnable tasks use and wait for
// (a CPU-bound task wants one CPU however little it gets), capacity the CPUs it may use. A node
// is overloaded when its load stays above `overload`; it offers its best candidate to the
// destinations with most room, and a move is made only when it leaves the destination at least
// `margin` less loaded than the source was. That condition cannot hold in both directions, so a
// task never bounces between two nodes, and with balanced loads nothing moves.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ferry::policy {

struct NodeView {
  std::string name;
  bool up = true;
  bool draining = false;
  double capacity = 1;  // CPUs
  double demand = 0;    // CPUs wanted (sampled)
  double reserved = 0;  // demand of tasks accepted and not yet sampled
  uint64_t mem_limit = 0, mem_used = 0;
  std::map<std::string, std::string> labels;
};

struct TaskView {
  std::string id;
  double demand = 0;     // CPUs it wants
  uint64_t age_ms = 0;   // since it started
  uint64_t stay_ms = 0;  // since it came to this node (its age when it never moved)
  uint64_t rss = 0;      // what a move carries
  std::map<std::string, std::string> labels;  // what it needs of a node
  std::string came_from;                      // the node it left last ("" when it never moved)
  std::string unmovable;  // why it cannot move (as its last attempt said), "" when it can
};

struct LoadSharingRules {
  double overload = 1.1;
  double margin = 0.25;
  uint64_t min_age_ms = 1000;
  uint64_t min_stay_ms = 5000;
  double min_demand = 0.5;
};

// "a; b; c": reasons in one line.
std::string join_reasons(const std::vector<std::string>& reasons);

double load_of(const NodeView& n);  // (demand + reserved) / capacity
// What a node's load becomes when it takes (or gives up) a task of demand d.
double load_with(const NodeView& n, double d);

// The tasks worth moving, best first: CPU-bound, old enough, settled, movable; the score is
// what the move gains (demand, more for older tasks: they are likely to run longer) for what it
// costs (the memory it carries).
std::vector<TaskView> rank_candidates(const std::vector<TaskView>& tasks,
                                      const LoadSharingRules& r);
double move_score(const TaskView& t);

// Whether node n may run a task that needs `labels` ("" when it may, else why not).
std::string label_mismatch(const NodeView& n, const std::map<std::string, std::string>& labels);

// Where task t of `source` may go, most room first; `why_not` gets the reason for each node
// left out.
std::vector<std::string> rank_destinations(const TaskView& t, const NodeView& source,
                                           const std::vector<NodeView>& nodes,
                                           const LoadSharingRules& r,
                                           std::map<std::string, std::string>* why_not);

// The destination's own decision on a proposed task ("" to accept, else the refusal).
std::string refuse_proposal(const NodeView& self, double task_demand, double source_load,
                            uint64_t task_rss, double margin);

}  // namespace ferry::policy
