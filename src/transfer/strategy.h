// The five ways to move an address space (DESIGN: strategies), and what each sends when.
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
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "image.pb.h"

namespace ferry::transfer {

enum class Strategy { kEagerAll, kPreCopy, kEagerDirty, kCopyOnReference, kFlushing };

std::optional<Strategy> parse_strategy(std::string_view name);
const char* strategy_name(Strategy s);
// Every name, for help texts and errors: "eager-all, pre-copy, ...".
std::string strategy_names();

// Pages of private anonymous memory come after the task runs at the destination (through a
// userfaultfd of the new process): from the source, or from the page store.
inline bool has_lazy_phase(Strategy s) {
  return s == Strategy::kEagerDirty || s == Strategy::kCopyOnReference || s == Strategy::kFlushing;
}

// Copy-on-reference: the pages that travel with the PCB although every other page comes on first
// touch. Restoring writes the rseq area (a fault on it would wait for the source while the task
// is still frozen), and the task's first instructions use its stack and its thread block (the
// stack protector's canary, errno): sorted, page-aligned ranges.
std::vector<std::pair<uint64_t, uint64_t>> pages_restoring_touches(const image::Image& img);

}  // namespace ferry::transfer
