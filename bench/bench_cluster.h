// What the migration benchmarks share: running commands, medians, and a 2-node local cluster
// with a workload task on it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::bench {

double median(std::vector<double> v);

struct Out {
  int status;
  std::string out;
};
// Runs argv (PATH lookup), returns its exit status and stdout.
Out run(const std::vector<std::string>& argv);

class BenchCluster {
 public:
  // Starts `ferry cluster up --nodes 2` in dir (after taking down what a crash left there).
  explicit BenchCluster(const std::string& dir,
                        const std::vector<std::string>& up_args = {"--nodes", "2"});
  ~BenchCluster();
  bool up() const { return up_; }
  Out ferry(std::vector<std::string> args);
  // Starts bench_target MIB 4k [MB_PER_S] on node1 and waits until its memory is touched.
  std::string start_task(int mib, double write_mb_s);
  // The node's network namespace (for raw TCP between nodes).
  std::string netns(const std::string& node) const;
  // The host pid of a task (its pid in the node's PID namespace is ns_pid).
  pid_t host_pid(const std::string& node, int ns_pid) const;
  // The host pid of a node's ferryd (-1 when it does not answer).
  pid_t ferryd_pid(const std::string& node);
  const std::string& bin() const { return bin_; }
  // The test programs of the same build (its tests/targets).
  std::string targets() const;
  // Copies every node's ferryd.log into `to` (created), for a run that went wrong.
  void keep_logs(const std::string& to) const;

 private:
  std::string dir_, bin_, id_;
  bool up_ = false;
};

// A directory for a benchmark's job files, beside the cluster directory (which holds only what
// `cluster up` made): made empty, removed at the end.
class JobFilesDir {
 public:
  explicit JobFilesDir(std::string path);
  ~JobFilesDir();
  JobFilesDir(const JobFilesDir&) = delete;
  JobFilesDir& operator=(const JobFilesDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What a process holds: threads, open descriptors (and how many name deleted files), resident
// memory.
struct Resources {
  uint64_t threads = 0, fds = 0, deleted_files = 0, rss_kib = 0;
};
Resources resources_of(pid_t pid);

// "RssAnon" + "RssShmem" of a process, in bytes.
uint64_t resident_private_bytes(pid_t pid);

}  // namespace ferry::bench
