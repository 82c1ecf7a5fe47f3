// eager-dirty: resident, modified pages while frozen; swapped-out ones come on demand after the
// commit, from the source.
#include "transfer/strategy.h"

namespace ferry::transfer {
namespace {

class EagerDirty : public Strategy {
 public:
  const char* name() const override { return "eager-dirty"; }
  void select_frozen_pages(const image::Image&, cr::PageSelection* sel) const override {
    sel->swapped = false;
  }
  bool has_lazy_phase() const override { return true; }
};

}  // namespace

const Strategy& eager_dirty() {
  static const EagerDirty s;
  return s;
}

}  // namespace ferry::transfer
