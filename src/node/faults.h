// Faults a test can ask a node to commit, to reach the failure paths of a migration.
#pragma once

#include <cstdint>

namespace ferry::node {

// Faults a test can ask a node to commit (FERRY_TEST_FAULTS, comma separated).
struct Faults {
  bool die_after_commit = false;           // source: exit right after sending Commit
  bool fail_restore = false;               // destination: the restore fails
  bool kill_task_before_freeze = false;    // source: the task ends between offer and freeze
  bool slow_stream = false;                // source: the page stream pauses between frames
  bool lose_commit_reply = false;          // destination: commits, then is unreachable for 3 s
  bool unreachable_channel_links = false;  // reader: offers channel links where none can connect
  bool snapshot_drop_recorded = false;     // job home: its snapshots' recordings lose a message
  bool refuse_proposals = false;           // destination: refuses every Starter's proposal
  // writer: each send on a channel link waits for its acknowledgement
  bool link_acks_first = false;
  // destination: a task that arrived enters its table only once it has ended (at most 3 s)
  bool slow_arrival_entry = false;
  // every task ferry stops here is killed between the interrupt and the wait for the stop
  bool end_tasks_as_they_stop = false;
  // the node plays a build before frame formats were announced: it says none (0) and checks
  // none (a cluster of two builds; its tags stay this build's, so only the checks can tell)
  bool old_frame_format = false;
  static Faults from_env();
  // The frame format this node announces (transfer::kFrameFormat, 0 with old_frame_format).
  uint32_t frame_format() const;
};

}  // namespace ferry::node
