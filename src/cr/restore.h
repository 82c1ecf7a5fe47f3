// Restore of one process from an image directory (signed with the host's image key, see
// image/image_key.h): a helper process is turned,
// one resource at a time, into the image's process, then released. Until that release nothing
// of the image has run; any failure kills the helper and changes nothing else.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "image/image_files.h"

namespace ferry::cr {

class Tracee;

struct BuildOptions {
  bool same_pid = false;  // a taken original PID is an error instead of a new PID
  // Descriptors of ferry that stand in for the process's fds whose other end was outside it
  // (a node's output relay, the restorer's stdio): image fd number -> ferry's fd.
  std::map<int, int> external_fds;
  // Lazily filled memory (migration strategies whose pages come after the process runs): every
  // private anonymous region stays registered with the userfaultfd, made with these features,
  // for ProcessBuilder::take_userfaultfd().
  bool lazy = false;
  uint64_t uffd_features = 0;
};

// A process rebuilt from an image and held stopped: nothing of it has run yet. release() lets
// it run; destroying it unreleased kills it.
class RestoredProcess {
 public:
  RestoredProcess(std::unique_ptr<Tracee> tracee, pid_t original_pid,
                  std::vector<std::string> notes);
  RestoredProcess(RestoredProcess&&) noexcept;
  ~RestoredProcess();

  pid_t pid() const { return pid_; }
  pid_t original_pid() const { return original_pid_; }
  const std::vector<std::string>& notes() const { return notes_; }
  uint64_t remote_syscalls() const;
  void release();
  void kill();

 private:
  std::unique_ptr<Tracee> tracee_;
  pid_t pid_;
  pid_t original_pid_;
  std::vector<std::string> notes_;
};

// Builds the image's process as a child of the caller and holds it. Throws ferry::Error; a
// failure leaves nothing behind.
RestoredProcess build_process(const image::LoadedImage& img, const BuildOptions& options);

struct RestoreOptions {
  std::string images_dir;
  bool same_pid = false;  // a taken original PID is an error instead of a new PID
  // The process stays in the restorer's control groups instead of going back into its own (and
  // failing where one of them is missing).
  bool stay_in_restorers_cgroups = false;
};

struct RestoreResult {
  pid_t pid = -1;  // the running process; a child of the caller
  pid_t original_pid = -1;
  uint64_t restore_us = 0;
  uint64_t remote_syscalls = 0;
  std::vector<std::string> notes;  // things the user should hear about
};

RestoreResult restore(const RestoreOptions& options);

// The CPU facts an image must match: xstate size and enabled features (XCR0).
size_t local_xstate_size();
uint64_t local_xcr0();

}  // namespace ferry::cr
