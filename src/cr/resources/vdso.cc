#include "cr/resources/vdso.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <vector>

#include "cr/resources/memory_map.h"
#include "cr/restorer.h"
#include "cr/resources/rseq.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

struct Block {
  uint64_t start = 0, end = 0, vdso = 0;
  std::vector<std::pair<std::string, uint64_t>> layout;  // name -> offset from start, in order
  std::vector<uint64_t> sizes;
};

bool is_vdso_part(const std::string& name) {
  return name == "[vvar]" || name == "[vvar_vclock]" || name == "[vdso]";
}

Block helper_block(pid_t pid) {
  Block b;
  for (auto& v : read_vmas(pid)) {
    if (!is_vdso_part(v.name)) continue;
    if (!b.start) b.start = v.start;
    if (v.name == "[vdso]") b.vdso = v.start;
    b.layout.emplace_back(v.name, v.start - b.start);
    b.sizes.push_back(v.end - v.start);
    b.end = v.end;
  }
  return b;
}

Block image_block(const image::Memory& m) {
  Block b;
  for (auto& v : m.vmas()) {
    if (!is_vdso_part(v.name())) continue;
    if (!b.start) b.start = v.start();
    if (v.kind() == image::Vma::VDSO) b.vdso = v.start();
    b.layout.emplace_back(v.name(), v.start() - b.start);
    b.sizes.push_back(v.end() - v.start());
    b.end = v.end();
  }
  return b;
}

}  // namespace

void prepare_address_space(Restorer& r, const image::Memory& m) {
  Tracee& t = r.tracee();
  Block have = helper_block(r.pid());
  Block want = image_block(m);
  if (!have.vdso) fail("the restore helper has no [vdso]");
  if (!want.vdso) fail("the image has no [vdso]; processes without one are not supported");
  if (have.layout != want.layout || have.sizes != want.sizes)
    fail("the image's vdso block differs from this kernel's (different kernel version)");

  // Everything below and above the block goes: the helper was a copy of ferry.
  unregister_helper_rseq(t);
  t.syscall_checked("munmap", SYS_munmap, {0, static_cast<long>(have.start)});
  long top = static_cast<long>(m.task_size());
  t.syscall_checked("munmap", SYS_munmap,
                    {static_cast<long>(have.end), top - static_cast<long>(have.end)});

  if (have.start == want.start) return;
  uint64_t len = have.end - have.start;
  auto move = [&](uint64_t from, uint64_t to) {
    long got = t.syscall(SYS_mremap,
                         {static_cast<long>(from), static_cast<long>(len), static_cast<long>(len),
                          MREMAP_MAYMOVE | MREMAP_FIXED, static_cast<long>(to)});
    if (static_cast<uint64_t>(got) != to)
      fail("cannot move the vdso block to {:x}: {}", to,
           got < 0 ? std::strerror(static_cast<int>(-got)) : "wrong address");
    t.relocate_syscall_insn(from, to);
  };
  bool overlap = want.start < have.end && have.start < want.end;
  if (overlap) {
    uint64_t tmp = r.reserve_gap(len);
    move(have.start, tmp);
    move(tmp, want.start);
    r.release_gap(tmp);
  } else {
    move(have.start, want.start);
  }
}

}  // namespace ferry::cr
