// The language of a task's control descriptor (node/task_control.h): what a task may ask, what
// is refused and why, and replies that are always one line.
#include <gtest/gtest.h>

#include "node/task_control.h"
#include "util/error.h"

namespace ferry::node {
namespace {

std::string refusal(std::string_view line) {
  try {
    parse_control_request(line);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::kBadInput);
    return e.what();
  }
  return "";
}

TEST(TaskControl, TheRequestsATaskMayMake) {
  auto to = std::get<MoveRequest>(parse_control_request("migrate to=node2"));
  EXPECT_EQ(to.to, "node2");
  EXPECT_TRUE(to.label_key.empty());
  EXPECT_TRUE(to.strategy.empty());
  auto by_label =
      std::get<MoveRequest>(parse_control_request("  migrate  label=gpu=1 strategy=pre-copy "));
  EXPECT_TRUE(by_label.to.empty());
  EXPECT_EQ(by_label.label_key, "gpu");
  EXPECT_EQ(by_label.label_value, "1");
  EXPECT_EQ(by_label.strategy, "pre-copy");
  EXPECT_TRUE(std::holds_alternative<WhereRequest>(parse_control_request("where")));
  EXPECT_TRUE(std::holds_alternative<SnapshotRequestLine>(parse_control_request("snapshot")));
  EXPECT_EQ(reply_snapshot("00112233aabbccdd"), "ok 00112233aabbccdd\n");
}

TEST(TaskControl, WhatIsRefusedAndWhy) {
  EXPECT_NE(refusal("").find("an empty request"), std::string::npos);
  EXPECT_NE(refusal("fly to=node2").find("unknown request 'fly'"), std::string::npos);
  EXPECT_NE(refusal("where now").find("where takes nothing more"), std::string::npos);
  EXPECT_NE(refusal("snapshot now").find("snapshot takes nothing more"), std::string::npos);
  EXPECT_NE(refusal("migrate").find("either to=NODE or label=KEY=VALUE"), std::string::npos);
  EXPECT_NE(refusal("migrate to=node2 label=gpu=1").find("either to=NODE or label"),
            std::string::npos);
  EXPECT_NE(refusal("migrate to=a to=b").find("to= is given twice"), std::string::npos);
  EXPECT_NE(refusal("migrate to=../etc").find("not a node name"), std::string::npos);
  EXPECT_NE(refusal("migrate label=gpu").find("not label=KEY=VALUE"), std::string::npos);
  EXPECT_NE(refusal("migrate to=node2 strategy=teleport").find("unknown strategy 'teleport'"),
            std::string::npos);
  EXPECT_NE(refusal("migrate to=node2 speed=fast").find("not speed="), std::string::npos);
  EXPECT_NE(refusal("migrate node2").find("'node2' is not KEY=VALUE"), std::string::npos);
  EXPECT_NE(refusal(std::string(kMaxControlLine + 1, 'x')).find("more than 4096 bytes"),
            std::string::npos);
  // What the task wrote comes back printable: no control character reaches its terminal.
  std::string escaped = refusal("fly\x1b[2J");
  EXPECT_EQ(escaped.find('\x1b'), std::string::npos) << escaped;
}

TEST(TaskControl, RepliesAreOneLine) {
  EXPECT_EQ(reply_ok("node2"), "ok node2\n");
  EXPECT_EQ(reply_at("node1"), "at node1\n");
  EXPECT_EQ(reply_refused("node node9 is down"), "refused node node9 is down\n");
  std::string two_lines = reply_refused("first\nsecond");
  EXPECT_EQ(two_lines.find('\n'), two_lines.size() - 1) << two_lines;
}

}  // namespace
}  // namespace ferry::node
