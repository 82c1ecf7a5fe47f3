#include "node/faults.h"

#include <cstdlib>
#include <string_view>

#include "transfer/frame_auth.h"
#include "util/proc.h"

namespace ferry::node {

Faults Faults::from_env() {
  static constexpr struct {
    std::string_view name;
    bool Faults::*flag;
  } kByName[] = {
      {"die-after-commit", &Faults::die_after_commit},
      {"fail-restore", &Faults::fail_restore},
      {"kill-task-before-freeze", &Faults::kill_task_before_freeze},
      {"slow-stream", &Faults::slow_stream},
      {"lose-commit-reply", &Faults::lose_commit_reply},
      {"unreachable-channel-links", &Faults::unreachable_channel_links},
      {"snapshot-drop-recorded", &Faults::snapshot_drop_recorded},
      {"refuse-proposals", &Faults::refuse_proposals},
      {"link-acks-first", &Faults::link_acks_first},
      {"slow-arrival-entry", &Faults::slow_arrival_entry},
      {"end-tasks-as-they-stop", &Faults::end_tasks_as_they_stop},
      {"old-frame-format", &Faults::old_frame_format},
  };
  Faults f;
  const char* e = std::getenv("FERRY_TEST_FAULTS");
  if (!e) return f;
  for (auto& name : proc::split(e, ','))
    for (auto& fault : kByName)
      if (name == fault.name) f.*fault.flag = true;
  return f;
}

uint32_t Faults::frame_format() const {
  return old_frame_format ? 0 : transfer::kFrameFormat;
}

}  // namespace ferry::node
