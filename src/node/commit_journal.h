// The sessions this node committed (a migration's copy released here), on disk: a source in
// doubt about its Commit asks "did you release it?" and must get the truth also from a ferryd
// that started again meanwhile (the task runs on across that restart). An entry is written and
// flushed before the copy is released: a source is never told "unknown", and so never resumes
// its original, for a copy that may run here.
//
// state_dir/committed.log: one line per session, "SESSION UNIX_MS\n"; entries older than a day
// are dropped when the journal is read at start.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::node {

class CommitJournal {
 public:
  explicit CommitJournal(std::string path);
  // The sessions committed in the last day (read at start; rewrites the file without the rest).
  std::vector<std::string> load();
  // Records the session, durably (fsync), before its copy is released.
  void record(const std::string& session);

 private:
  std::string path_;
  std::mutex mu_;
};

}  // namespace ferry::node
