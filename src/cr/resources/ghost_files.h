// Unlinked files the process still uses ("ghost files", as CRIU calls them): opened or mapped,
// then removed from the directory tree. Their content travels in pages.img; on restore each is
// recreated, opened and unlinked again, at its old path when that path is free.
#pragma once

#include <sys/stat.h>

#include <string>

#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// Registers the unlinked file behind `fd` once per inode; returns its GhostFile id.
uint64_t register_ghost(DumpContext& ctx, image::Memory* m, const std::string& path, UniqueFd fd,
                        const struct stat& st);
void dump_ghost_contents(DumpContext& ctx, image::Memory* m);
// Recreates every ghost file, empty (the content is written as it arrives); ferry's O_RDWR
// descriptors land in r.ghost_fds.
void restore_ghosts(Restorer& r, const image::Memory& m);
// The content came in whole pages: trims each file back to its exact size.
void finish_ghosts(Restorer& r, const image::Memory& m);

}  // namespace ferry::cr
