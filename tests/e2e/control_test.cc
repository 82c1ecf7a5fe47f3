// A task asks to move (issue 11): through its control descriptor (FERRY_CONTROL_FD) a task asks
// where it is and to be moved to a node or to a node with a label; the reply comes once it runs
// there, or it is told why not and runs on where it was. The descriptor goes with it.
#include <gtest/gtest.h>

#include "support/cluster.h"

namespace ferry::test {
namespace {

// An unmodified shell asks, one line at a time, and prints each request with its reply.
constexpr const char* kAsker =
    R"(ask() { echo "$1" >&$FERRY_CONTROL_FD; read -r r <&$FERRY_CONTROL_FD; echo "$1 -> $r"; }
ask where
ask "migrate to=node2"
ask where
ask "migrate label=zone=b strategy=pre-copy"
ask where
ask "migrate to=nowhere"
ask "migrate label=gpu=1"
ask "migrate to=node3"
ask "jump"
ask where
)";

TEST(ControlTest, ATaskMovesItselfToANodeAndToALabelAndIsToldWhenItCannot) {
  TestCluster c(3, {"--label", "node3:zone=b"});
  ASSERT_TRUE(c.up());
  TempDir dir;
  write_file(dir / "ask.sh", kAsker);
  std::string id = c.run({"/bin/sh", dir / "ask.sh"});
  ASSERT_FALSE(id.empty());
  CmdResult w = c.ferry({"wait", id, "--timeout", "60"});
  ASSERT_EQ(w.status, 0) << w.out << w.err << c.logs(id);
  EXPECT_EQ(c.logs(id),
            "where -> at node1\n"
            "migrate to=node2 -> ok node2\n"
            "where -> at node2\n"
            "migrate label=zone=b strategy=pre-copy -> ok node3\n"
            "where -> at node3\n"
            "migrate to=nowhere -> refused unknown node 'nowhere'\n"
            "migrate label=gpu=1 -> refused no node can take it (node1: lacks the label gpu=1 "
            "the task requires; node2: lacks the label gpu=1 the task requires)\n"
            "migrate to=node3 -> refused the task runs on node3 already\n"
            "jump -> refused unknown request 'jump' (migrate, where, snapshot)\n"
            "where -> at node3\n");
  nlohmann::json t = c.task(id);
  EXPECT_EQ(t.value("node", ""), "node3") << t.dump();
  EXPECT_EQ(t.value("epoch", 0), 2) << t.dump();
  // The label it moved for is one it now requires; the one it could not have is not.
  EXPECT_EQ(t["labels"], nlohmann::json({{"zone", "b"}})) << t.dump();
}

TEST(ControlTest, EveryTaskHasItsDescriptorAboveItsChannelEnds) {
  TestCluster c(1);
  ASSERT_TRUE(c.up());
  TempDir dir;
  write_file(dir / "job.yaml",
             "tasks:\n"
             "  - name: a\n    command: [sh, -c, \"echo $FERRY_CONTROL_FD >&4\"]\n"
             "  - name: b\n    command: [sh, -c, \"cat <&3; echo where >&$FERRY_CONTROL_FD; "
             "head -n1 <&$FERRY_CONTROL_FD\"]\n"
             "channels:\n  - from: a:4\n    to: b:3\n");
  CmdResult r = c.ferry({"job", "run", dir / "job.yaml"});
  ASSERT_EQ(r.status, 0) << r.err;
  CmdResult w = c.ferry({"job", "wait", "job", "--timeout", "30"});
  ASSERT_EQ(w.status, 0) << w.out << w.err;
  // a's descriptor is 3 (its channel end is 4); b's is 4 (its channel end is 3).
  EXPECT_EQ(c.logs("job/b"), "3\nat node1\n");
}

}  // namespace
}  // namespace ferry::test
