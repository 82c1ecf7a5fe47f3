// States and outcomes cross the wire as enums and are printed by one rule (node/states.h); an
// error's kind crosses the wire as the status code (node/services.h) and comes back the same.
#include <gtest/gtest.h>

#include "node/services.h"
#include "node/states.h"

namespace ferry::node {
namespace {

TEST(States, PrintedAsTheCommandLineAlwaysShowedThem) {
  EXPECT_EQ(name_of(rpc::TASK_RUNNING), "running");
  EXPECT_EQ(name_of(rpc::TASK_LOST), "lost");
  EXPECT_EQ(name_of(rpc::NODE_DOWN), "down");
  EXPECT_EQ(name_of(rpc::PHASE_IN_DOUBT), "in-doubt");
  EXPECT_EQ(name_of(rpc::OUTCOME_TASK_EXITED), "task-exited");
  EXPECT_EQ(name_of(rpc::MIGRATION_PULLING), "pulling");
  EXPECT_EQ(name_of(static_cast<rpc::TaskState>(99)), "unknown");
}

TEST(States, EndedAndReleased) {
  rpc::TaskInfo t;
  for (auto s : {rpc::TASK_RUNNING, rpc::TASK_MIGRATING}) {
    t.set_state(s);
    EXPECT_FALSE(ended(t)) << name_of(s);
  }
  for (auto s : {rpc::TASK_EXITED, rpc::TASK_LOST}) {
    t.set_state(s);
    EXPECT_TRUE(ended(t)) << name_of(s);
  }
  EXPECT_TRUE(released(rpc::MIGRATION_PULLING));
  EXPECT_TRUE(released(rpc::MIGRATION_LOST));
  EXPECT_FALSE(released(rpc::MIGRATION_READY));
  EXPECT_FALSE(released(rpc::MIGRATION_ABORTED));
}

TEST(ErrorKinds, CrossTheWireAndComeBack) {
  for (auto kind : {Error::Kind::kInternal, Error::Kind::kBadInput, Error::Kind::kRefused,
                    Error::Kind::kTaskEnded, Error::Kind::kPeerDown}) {
    grpc::Status s = status_of(Error(kind, "one line"));
    EXPECT_FALSE(s.ok());
    Error back = error_of(s, "Offer to node2");
    EXPECT_EQ(back.kind(), kind);
    EXPECT_STREQ(back.what(), "one line");
  }
}

TEST(ErrorKinds, AStatusGrpcMadeIsAPeerThatIsDown) {
  Error e = error_of(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
                     "Locate at node2");
  EXPECT_EQ(e.kind(), Error::Kind::kPeerDown);
  EXPECT_STREQ(e.what(), "Locate at node2: connection refused");
  Error silent = error_of(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, ""), "Wait at node3");
  EXPECT_EQ(silent.kind(), Error::Kind::kPeerDown);
  EXPECT_STREQ(silent.what(), "Wait at node3: unreachable");
}

}  // namespace
}  // namespace ferry::node
