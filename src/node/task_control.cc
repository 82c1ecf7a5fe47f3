#include "node/task_control.h"

#include <set>
#include <vector>

#include "transfer/strategy.h"
#include "util/error.h"
#include "util/names.h"
#include "util/printable.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

constexpr size_t kMaxNameLength = 64;

bool is_name(std::string_view s) { return is_plain_name(s, kMaxNameLength); }

MoveRequest parse_move(const std::vector<std::string>& words) {
  MoveRequest m;
  std::set<std::string> seen;
  for (size_t i = 1; i < words.size(); i++) {
    const std::string& w = words[i];
    auto eq = w.find('=');
    if (eq == std::string::npos)
      fail_as(Error::Kind::kBadInput, "'{}' is not KEY=VALUE", printable(w));
    std::string key = w.substr(0, eq), value = w.substr(eq + 1);
    if (!seen.insert(key).second) fail_as(Error::Kind::kBadInput, "{}= is given twice", key);
    if (key == "to") {
      if (!is_name(value))
        fail_as(Error::Kind::kBadInput, "'{}' is not a node name", printable(value));
      m.to = value;
    } else if (key == "label") {
      auto inner = value.find('=');
      if (inner == std::string::npos || inner == 0)
        fail_as(Error::Kind::kBadInput, "label={} is not label=KEY=VALUE", printable(value));
      m.label_key = value.substr(0, inner);
      m.label_value = value.substr(inner + 1);
    } else if (key == "strategy") {
      if (!transfer::find_strategy(value))
        fail_as(Error::Kind::kBadInput, "unknown strategy '{}' ({})", printable(value),
                transfer::strategy_names());
      m.strategy = value;
    } else {
      fail_as(Error::Kind::kBadInput,
              "migrate knows to=, label= and strategy=, not {}=", printable(key));
    }
  }
  if (m.to.empty() == m.label_key.empty())
    fail_as(Error::Kind::kBadInput, "migrate wants either to=NODE or label=KEY=VALUE");
  return m;
}

}  // namespace

ControlRequest parse_control_request(std::string_view line) {
  if (line.size() > kMaxControlLine)
    fail_as(Error::Kind::kBadInput, "a request of more than {} bytes", kMaxControlLine);
  std::vector<std::string> words = proc::split_ws(line);
  if (words.empty()) fail_as(Error::Kind::kBadInput, "an empty request (migrate, where, snapshot)");
  if (words[0] == "where") {
    if (words.size() > 1) fail_as(Error::Kind::kBadInput, "where takes nothing more");
    return WhereRequest{};
  }
  if (words[0] == "snapshot") {
    if (words.size() > 1) fail_as(Error::Kind::kBadInput, "snapshot takes nothing more");
    return SnapshotRequestLine{};
  }
  if (words[0] == "migrate") return parse_move(words);
  fail_as(Error::Kind::kBadInput, "unknown request '{}' (migrate, where, snapshot)",
          printable(words[0]));
}

// (printable() escapes what could break the line.)
std::string reply_ok(const std::string& node) {
  return "ok " + printable(node) + "\n";
}
std::string reply_at(const std::string& node) {
  return "at " + printable(node) + "\n";
}
std::string reply_snapshot(const std::string& id) {
  return "ok " + printable(id) + "\n";
}
std::string reply_refused(const std::string& reason) {
  return "refused " + printable(reason) + "\n";
}

}  // namespace ferry::node
