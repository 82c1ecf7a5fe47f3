// The [vvar]/[vvar_vclock]/[vdso] block. Its pages come from the kernel, not from the image; what
// must travel is its address, because libc caches pointers into it. restore moves the helper's
// own block (same kernel => same content) to where the image had it, with one mremap.
//
// prepare_address_space() is the first memory step of a restore: it empties the helper's
// address space except that block and puts the block in place.
#pragma once

#include "image.pb.h"

namespace ferry::cr {

class Restorer;

void prepare_address_space(Restorer& r, const image::Memory& m);

}  // namespace ferry::cr
