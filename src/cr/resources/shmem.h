// Shared memory objects: MAP_SHARED|MAP_ANONYMOUS regions and memfds (the same kernel object,
// shmem). The content is dumped once per object, however many regions and fds refer to it.
//
// restore: a memfd is rebuilt in ferry (memfd_create; content written as it arrives; seals last)
// and handed to the helper; shared anonymous memory must be created inside the helper, so
// SharedAnonBuilder maps each object once at a temporary address (where its content is written
// as it arrives) and mremap()s (old size 0) it into every region.
#pragma once

#include <sys/stat.h>

#include <map>
#include <string>

#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// Registers the object behind `fd` (once per inode) and returns its image id.
uint64_t register_shmem(DumpContext& ctx, image::Memory* m, UniqueFd fd, const struct stat& st,
                        const std::string& name);
void dump_shmem_contents(DumpContext& ctx, image::Memory* m);

const image::ShmemObject& find_shmem(const image::Memory& m, uint64_t id);

// Rebuilds every memfd of the image in ferry (r.shmem_fds), empty; seals come last (seal_memfds).
void restore_memfds(Restorer& r, const image::Memory& m);
void seal_memfds(Restorer& r, const image::Memory& m);

class SharedAnonBuilder {
 public:
  SharedAnonBuilder(Restorer& r, const image::Memory& m) : r_(r), m_(m) {}
  void map(const image::Vma& v);
  // Where the object's content goes in the helper until finish().
  uint64_t temp_address(uint64_t id) const;
  void finish();  // removes the temporary mappings

 private:
  Restorer& r_;
  const image::Memory& m_;
  std::map<uint64_t, uint64_t> temp_;  // object id -> temporary address in the helper
};

}  // namespace ferry::cr
