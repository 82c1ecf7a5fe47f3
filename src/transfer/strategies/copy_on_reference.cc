// copy-on-reference: only the PCB and the layout while frozen, with the few pages restoring
// itself touches; every other page comes on first touch after the commit, from the source, and a
// background push brings the rest.
#include "transfer/strategies/copy_on_reference.h"

#include <sys/user.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "transfer/strategy.h"

namespace ferry::transfer {
namespace {

class CopyOnReference : public Strategy {
 public:
  const char* name() const override { return "copy-on-reference"; }
  void select_frozen_pages(const image::Image& img, cr::PageSelection* sel) const override {
    sel->only =
        std::make_shared<AddressRanges>(pages_restoring_touches(img));
  }
  bool has_lazy_phase() const override { return true; }
};

}  // namespace

const Strategy& copy_on_reference() {
  static const CopyOnReference s;
  return s;
}

AddressRanges pages_restoring_touches(const image::Image& img) {
  constexpr uint64_t kPage = 4096;
  AddressRanges out;
  auto around = [&](uint64_t addr, uint64_t below, uint64_t above) {
    uint64_t page = addr & ~(kPage - 1);
    if (page < below) return;
    out.push_back({page - below, page + kPage + above});
  };
  const image::Rseq& rseq = img.attrs().rseq();
  if (rseq.ptr())
    around(rseq.ptr(), 0,
           ((rseq.ptr() + rseq.size() - 1) & ~(kPage - 1)) - (rseq.ptr() & ~(kPage - 1)));
  if (img.registers().gpr().size() == sizeof(user_regs_struct)) {
    user_regs_struct r;
    std::memcpy(&r, img.registers().gpr().data(), sizeof r);
    around(r.rsp, 2 * kPage, 2 * kPage);  // below: room for a signal frame
    around(r.fs_base, kPage, kPage);
  }
  return merged(std::move(out));
}

}  // namespace ferry::transfer
