// A node's snapshot store (issue 12): by default <state_dir>/snapshots, or a directory the
// operator names (a shared file system). Everything in it is ferry's own (root's, private) and
// is checked as such before it is used:
//
//   ID/report.pb               the coordinator's report (on the job's home)
//   ID/tasks/NAME/             the image of task NAME (on the node that recorded it)
//   ID/channels/N.state        the recorded state of channel N (on its reader's node)
//   ID/channels/N.unsent       what N's writer had written that its end had not taken (its
//                              pipe held it: part of the writer's state, on the writer's node)
#pragma once

#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::snapshot {

class SnapshotStore {
 public:
  explicit SnapshotStore(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }

  // A snapshot id: 16 hex digits (what a path may be built from).
  static bool valid_id(const std::string& id);
  // The directories of a snapshot, created (0700) when missing.
  std::string task_dir(const std::string& id, const std::string& task);
  std::string channel_path(const std::string& id, uint32_t channel, const char* suffix = ".state");
  std::string unsent_path(const std::string& id, uint32_t channel) {
    return channel_path(id, channel, ".unsent");
  }
  void save_report(const rpc::SnapshotReport& report);
  // Every report in the store (those that cannot be read are skipped, with a warning).
  std::vector<rpc::SnapshotReport> reports() const;
  // Removes what the store holds of snapshot `id`; false when it holds nothing.
  bool remove(const std::string& id);

 private:
  std::string snapshot_dir(const std::string& id);
  std::string root_;
};

}  // namespace ferry::snapshot
