// pre-copy: rounds of changed pages while the task runs (transfer/precopy.h); while frozen, what
// changed since the last round. A page may arrive once per round, and twice more.
#include "transfer/precopy.h"
#include "transfer/strategy.h"

namespace ferry::transfer {
namespace {

class PreCopy : public Strategy {
 public:
  const char* name() const override { return "pre-copy"; }
  bool sends_rounds() const override { return true; }
  uint64_t arrivals_per_page() const override { return kMaxPrecopyRounds + 2; }
};

}  // namespace

const Strategy& pre_copy() {
  static const PreCopy s;
  return s;
}

}  // namespace ferry::transfer
