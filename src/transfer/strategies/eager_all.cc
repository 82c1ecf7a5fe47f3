// eager-all: every resident page while frozen, as it is; nothing before or after.
#include "transfer/strategy.h"

namespace ferry::transfer {
namespace {

class EagerAll : public Strategy {
 public:
  const char* name() const override { return "eager-all"; }
  void select_frozen_pages(const image::Image&, cr::PageSelection* sel) const override {
    sel->skip_zero = false;
  }
};

}  // namespace

const Strategy& eager_all() {
  static const EagerAll s;
  return s;
}

}  // namespace ferry::transfer
