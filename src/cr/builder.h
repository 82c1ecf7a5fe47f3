// Building a process from an image in three steps, so that page data can arrive from anywhere
// (pages.img, a migration's page stream) and be put straight into place:
//
//   ProcessBuilder b(image, options);   // helper process, address space laid out, objects made
//   b.place(target, data, len) ...      // page contents, in any order
//   RestoredProcess p = b.finish();     // everything else; the process is held, not yet running
//
// Every ptrace request goes to the helper from the thread that created the builder, so the
// constructor and finish() must run on the same thread; place() may run on any one thread.
// A builder destroyed before finish() kills its helper.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cr/resources/memory_map.h"
#include "cr/restore.h"
#include "image.pb.h"
#include "image/page_sink.h"
#include "util/fd.h"

namespace ferry::cr {

class Restorer;
class SharedAnonBuilder;
class Tracee;

class ProcessBuilder {
 public:
  ProcessBuilder(const image::Image& img, const BuildOptions& options);
  ~ProcessBuilder();
  ProcessBuilder(const ProcessBuilder&) = delete;
  ProcessBuilder& operator=(const ProcessBuilder&) = delete;

  pid_t pid() const { return pid_; }
  // Puts page data where it belongs. Throws when the target is not a place the image has.
  void place(const image::PageTarget& target, const char* data, size_t len);
  uint64_t bytes_placed() const { return bytes_placed_; }
  // Pre-copy: the builder was made from a first description of a running process and has
  // received rounds of its pages; `final` is the description at the freeze. Everything of the
  // old layout goes except private anonymous memory in `retained` (sorted, within anonymous
  // private regions of both layouts), whose pages stay; `discard` lists pages of it that the
  // process has dropped since they were sent (they become empty again). Then the layout of
  // `final` is built around what stayed. `final` must outlive the builder.
  void relayout(const image::Image& final, const AddressRanges& retained,
                const AddressRanges& discard);
  // The builder was made from the layout of a running process (describe_layout()), and `final`,
  // the description at the freeze, has the same layout (the caller compared them): from now on
  // the builder works from `final`, whose files reach the process through `options`'s
  // external_fds. `final` must outlive the builder.
  void adopt(const image::Image& final, const BuildOptions& options);
  // Lazy mode: the userfaultfd on which the private anonymous regions are registered, and those
  // regions. After this, page data can no longer be placed by the builder; faults of the
  // process (also during finish()) wait for whoever reads the userfaultfd.
  UniqueFd take_userfaultfd(AddressRanges* regions);
  // Completes the process and hands it over, held stopped.
  RestoredProcess finish();

 private:
  void place_memory(uint64_t addr, const char* data, size_t len);
  // Writes into memory that exists (writable or not).
  void write_through(const image::Vma& v, uint64_t addr, const char* data, size_t len);
  void register_userfaultfd_regions();
  void setup_userfaultfd();
  void drop_userfaultfd();

  const image::Image* img_;
  BuildOptions options_;
  pid_t pid_ = -1;
  std::unique_ptr<Tracee> tracee_;
  std::unique_ptr<Restorer> r_;
  std::unique_ptr<SharedAnonBuilder> shared_anon_;
  std::map<uint64_t, const image::Vma*> vmas_;  // start -> region
  std::map<uint64_t, uint64_t> uffd_regions_;   // start -> end, registered for UFFDIO_COPY
  UniqueFd uffd_;
  int remote_uffd_ = -1;
  UniqueFd mem_fd_;  // /proc/PID/mem, for regions that are not writable
  uint64_t bytes_placed_ = 0;
  bool finished_ = false;
};

}  // namespace ferry::cr
