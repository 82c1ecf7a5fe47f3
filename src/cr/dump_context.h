// What every resource's dump() gets: the stopped process, a place for syscall arguments inside
// it, access to its file descriptors, and the pages file being written.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cr/pages.h"
#include "cr/ptrace/tracee.h"
#include "cr/remote_memory.h"
#include "cr/resources/memory_map.h"
#include "image.pb.h"
#include "image/page_sink.h"
#include "util/fd.h"

namespace ferry::cr {

class DumpContext {
 public:
  explicit DumpContext(Tracee& tracee) : tracee_(&tracee), pid_(tracee.pid()) {}
  // Without a hold on the process: only what /proc shows (describe_layout()).
  explicit DumpContext(pid_t pid) : pid_(pid) {}

  Tracee& tracee();
  pid_t pid() const { return pid_; }
  // Where page data goes (set before the pages are dumped).
  image::PageSink& pages() { return *pages_; }
  void set_pages(image::PageSink* sink) { pages_ = sink; }
  image::DumpStats& stats() { return stats_; }
  PageSelection& selection() { return selection_; }
  // The regions as the checks before the freeze read them (see read_vmas_again()).
  std::vector<VmaInfo> preflight_vmas;
  // Pre-copy: ferry's own write-protection is on the memory; it is not the process's.
  bool ferry_tracks_writes = false;

  // Scratch memory inside the process for syscall arguments and results (created on first use,
  // removed by finish()). It also holds the tracee's safety net (see Tracee::install_safety_net).
  // Its address range is excluded from the memory dump.
  uint64_t scratch();
  static constexpr size_t kScratchSize = 64 * 1024;
  static constexpr size_t kArgsOffset = 64;  // after the trampoline code
  // Where answer_queries_and_fork() writes its code (the safety net's frame is in the upper half).
  static constexpr size_t kBatchCodeOffset = 16 * 1024;
  bool is_scratch(uint64_t start) const { return scratch_ && scratch_->addr() == start; }

  // Runs a syscall in the process whose output lands in scratch; copies `len` bytes back.
  long syscall_out(long nr, SyscallArgs args, void* out, size_t len);

  // A call that reads something of the process, asked now and answered later, together with
  // the others: argument `out_arg` (1..6; 0: none) is given an output area of `out_len` bytes in
  // scratch memory, and `then` gets the raw result and that output.
  struct Query {
    long nr = 0;
    SyscallArgs args;
    int out_arg = 0;
    size_t out_len = 0;
    std::function<void(image::Image& img, long result, const char* out)> then;
  };
  void ask(Query q) { queries_.push_back(std::move(q)); }
  // Runs the calls asked so far, one by one, and gives each answer to its `then`.
  void answer_queries(image::Image& img);
  // The same in one go, then an injected fork (Tracee::fork_held_copy_after()): a snapshot's
  // pause is then the fork and a few stops, not a stop for every call. Returns the copy's pid.
  // (The copy inherits the scratch memory: HeldCopy::inherited_scratch.)
  pid_t answer_queries_and_fork(image::Image& img);

  // Whose memory the pages are read from: the process's, or (a snapshot) a held copy's.
  pid_t memory_pid() const { return memory_pid_ ? memory_pid_ : pid_; }
  void read_memory_of(pid_t copy) {
    memory_pid_ = copy;
    memory_.reset();
  }
  // The memory of memory_pid(), to read pages from.
  RemoteMemory& memory();
  // Memory via /proc/PID/mem (which reaches what process_vm_readv refuses), of memory_pid().
  void read_memory(uint64_t addr, void* data, size_t len);

  // A descriptor of ours referring to the same open file as the process's fd `num`.
  UniqueFd steal_fd(int num);

  // Removes injected state (scratch) while the process is still held.
  void finish();

  // Objects whose content is dumped once all references to them are known, by image id:
  // shared memory (shmem/memfd) and unlinked files. Our descriptors for reading them.
  std::map<uint64_t, UniqueFd> shmem_fds;
  std::map<uint64_t, UniqueFd> ghost_fds;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> ghost_by_inode;  // (dev, ino) -> ghost id

 private:
  Tracee* tracee_ = nullptr;
  pid_t pid_;
  image::PageSink* pages_ = nullptr;
  image::DumpStats stats_;
  PageSelection selection_;
  std::optional<RemoteMapping> scratch_;
  std::vector<Query> queries_;
  UniqueFd pidfd_;
  pid_t memory_pid_ = 0;
  std::optional<RemoteMemory> memory_;
};

}  // namespace ferry::cr
