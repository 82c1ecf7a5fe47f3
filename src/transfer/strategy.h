// The ways to move an address space (DESIGN: strategies): each one an object with what it sends
// before, during and after the freeze, and what the destination must be ready for. One file each
// under transfer/strategies/, listed once in strategy_registry.cc; the node, the CLI, the tests
// and the benchmarks ask the object or the registry, never a name.
//
//   strategy           while the task runs   while frozen                   afterwards
//   eager-all          -                     every resident page            nothing
//   pre-copy           rounds of dirty pages the last dirty set             nothing
//   eager-dirty        -                     resident, modified pages       the rest, on demand
//   copy-on-reference  -                     PCB and layout, and the few    every page on first
//                                            pages restoring touches        touch + background push
//   flushing           -                     modified pages to a page store pages from the store
//
// "Afterwards" means the task already runs at the destination. Written pages of private file
// mappings, shared memory and unlinked-file contents always travel while frozen.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cr/pages.h"
#include "image.pb.h"

namespace ferry::transfer {

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual const char* name() const = 0;

  // Source, before the freeze: rounds of changed pages while the task runs (transfer/precopy.h),
  // whose last one decides what travels while frozen.
  virtual bool sends_rounds() const { return false; }
  // Source, while frozen: which pages go with the remote tasking message (not called for a
  // strategy that sends rounds). What does not go now comes after the commit, if ever.
  virtual void select_frozen_pages(const image::Image&, cr::PageSelection*) const {}
  // The frozen pages go into the page store (an image of their own), not the page stream.
  virtual bool stores_pages() const { return false; }
  // After the commit the task runs while its private pages still arrive (userfaultfd)...
  virtual bool has_lazy_phase() const { return false; }
  // ... from the source, over the page stream (else from the page store).
  bool lazy_from_source() const { return has_lazy_phase() && !stores_pages(); }
  // Destination: how many times the task's resident memory may arrive, at most.
  virtual uint64_t arrivals_per_page() const { return 1; }
};

// nullptr for an unknown name.
const Strategy* find_strategy(std::string_view name);
const Strategy& default_strategy();
const std::vector<const Strategy*>& all_strategies();
// Every name, for help texts and errors: "eager-all, pre-copy, ...".
std::string strategy_names();
std::vector<std::string> strategy_name_list();

}  // namespace ferry::transfer
