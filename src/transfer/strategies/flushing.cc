// flushing: while frozen, the modified pages go to the page store (an image of their own, on a
// file system both nodes share); the task then faults them in from the store.
#include "transfer/strategy.h"

namespace ferry::transfer {
namespace {

class Flushing : public Strategy {
 public:
  const char* name() const override { return "flushing"; }
  bool stores_pages() const override { return true; }
  bool has_lazy_phase() const override { return true; }
};

}  // namespace

const Strategy& flushing() {
  static const Flushing s;
  return s;
}

}  // namespace ferry::transfer
