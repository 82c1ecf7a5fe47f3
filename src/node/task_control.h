// What a task may ask of ferry through its control descriptor (issue 11; its number is in the
// task's environment as FERRY_CONTROL_FD): one line a request, one line the reply.
//
//   migrate to=NODE [strategy=S]      ->  ok NODE            (once it runs at NODE)
//   migrate label=KEY=VALUE [strategy=S]                     (to a node that carries the label)
//                                     ->  refused REASON     (it keeps running where it was)
//   where                             ->  at NODE
//   snapshot                          ->  ok SNAPSHOT_ID     (a snapshot of its job, started
//                                                            at it, once it is complete)
//
// This is the language only; the node that serves the descriptor comes with the rest of the
// issue.
#pragma once

#include <string>
#include <string_view>
#include <variant>

namespace ferry::node {

struct MoveRequest {
  std::string to;         // a node, or
  std::string label_key;  // a label the destination must carry
  std::string label_value;
  std::string strategy;  // "" for the default
};
struct WhereRequest {};
struct SnapshotRequestLine {};
using ControlRequest = std::variant<MoveRequest, WhereRequest, SnapshotRequestLine>;

// The most a request line may hold.
constexpr size_t kMaxControlLine = 4096;

// One line as the task wrote it (without its newline). Throws Error (bad input) saying what is
// wrong, which the task gets back as the reason of a refusal.
ControlRequest parse_control_request(std::string_view line);

// The replies, each one line with its newline; a reason is made printable and kept on one line.
std::string reply_ok(const std::string& node);
std::string reply_at(const std::string& node);
std::string reply_snapshot(const std::string& id);
std::string reply_refused(const std::string& reason);

}  // namespace ferry::node
