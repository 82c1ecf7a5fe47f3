#include "cr/resources/vm_flags.h"

#include <fmt/format.h>

#include "util/proc.h"

namespace ferry::cr {
namespace {

enum class Kind { kDerived, kRestored, kRefused };

struct Mnemonic {
  const char* name;
  Kind kind;
  uint64_t bit;     // ferry's bit (0: none)
  const char* why;  // kRefused: what the region is
};

constexpr Mnemonic kTable[] = {
    {"rd", Kind::kDerived, 0, nullptr},
    {"wr", Kind::kDerived, 0, nullptr},
    {"ex", Kind::kDerived, 0, nullptr},
    {"sh", Kind::kDerived, 0, nullptr},
    {"mr", Kind::kDerived, 0, nullptr},
    {"mw", Kind::kDerived, kVmMayWrite, nullptr},
    {"me", Kind::kDerived, 0, nullptr},
    {"ms", Kind::kDerived, 0, nullptr},
    {"ac", Kind::kDerived, 0, nullptr},
    {"sd", Kind::kDerived, 0, nullptr},
    {"gd", Kind::kRestored, kVmGrowsDown, nullptr},
    {"hg", Kind::kRestored, kVmHugePage, nullptr},
    {"nh", Kind::kRestored, kVmNoHugePage, nullptr},
    {"dc", Kind::kRestored, kVmDontFork, nullptr},
    {"dd", Kind::kRestored, kVmDontDump, nullptr},
    {"wf", Kind::kRestored, kVmWipeOnFork, nullptr},
    {"mg", Kind::kRestored, kVmMergeable, nullptr},
    {"lo", Kind::kRestored, kVmLocked, nullptr},
    {"lf", Kind::kRestored, kVmLockOnFault, nullptr},
    {"nr", Kind::kRestored, kVmNoReserve, nullptr},
    {"sr", Kind::kRestored, kVmSeqRead, nullptr},
    {"rr", Kind::kRestored, kVmRandRead, nullptr},
    {"dp", Kind::kRestored, kVmDroppable, nullptr},
    {"gu", Kind::kRestored, kVmGuard, nullptr},
    {"io", Kind::kRefused, kVmIo, "maps device memory (I/O)"},
    {"pf", Kind::kRefused, kVmPfnMap, "maps device memory (raw page frames)"},
    {"mm", Kind::kRefused, kVmMixedMap, "maps device memory (mixed map)"},
    {"de", Kind::kRefused, 0, "is a driver's mapping that may not be expanded"},
    {"um", Kind::kRefused, kVmUffdMissing, "is registered with userfaultfd"},
    {"uw", Kind::kRefused, kVmUffdWp, "is registered with userfaultfd"},
    {"ui", Kind::kRefused, 0, "is registered with userfaultfd (minor faults)"},
    {"ht", Kind::kRefused, kVmHugetlb, "uses hugetlbfs pages"},
    {"ss", Kind::kRefused, kVmShadowStack, "is a shadow stack"},
    {"sl", Kind::kRefused, kVmSealed, "is sealed (mseal)"},
    {"sf", Kind::kRefused, 0, "uses synchronous page faults (DAX)"},
    {"nl", Kind::kRefused, 0, "is a non-linear mapping"},
    {"ar", Kind::kRefused, 0, "carries an architecture-specific flag"},
    {"mt", Kind::kRefused, 0, "uses memory tagging"},
    {"bt", Kind::kRefused, 0, "uses branch target identification"},
    {"p0", Kind::kRefused, 0, "uses a memory protection key"},
    {"p1", Kind::kRefused, 0, "uses a memory protection key"},
    {"p2", Kind::kRefused, 0, "uses a memory protection key"},
    {"p3", Kind::kRefused, 0, "uses a memory protection key"},
    {"p4", Kind::kRefused, 0, "uses a memory protection key"},
};

}  // namespace

VmFlags parse_vm_flags_line(const std::string& mnemonics) {
  VmFlags f;
  for (auto& m : proc::split_ws(mnemonics)) {
    f.names.insert(m);
    const Mnemonic* known = nullptr;
    for (auto& k : kTable)
      if (m == k.name) known = &k;
    if (!known) {
      if (f.refused.empty())
        f.refused = fmt::format(
            "carries the flag '{}', which ferry does not know (refused "
            "rather than restored without it)",
            m);
      continue;
    }
    f.bits |= known->bit;
    if (known->kind == Kind::kRefused && f.refused.empty()) f.refused = known->why;
  }
  return f;
}

std::string vm_flags_difference(const std::set<std::string>& want,
                                const std::set<std::string>& got) {
  std::string out;
  for (auto& w : want)
    if (!got.count(w) && w != "sd") out += (out.empty() ? "-" : " -") + w;
  for (auto& g : got)
    if (!want.count(g) && g != "sd") out += (out.empty() ? "+" : " +") + g;
  return out;
}

std::string join_flags(const std::set<std::string>& names) {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : " ") + n;
  return out;
}

}  // namespace ferry::cr
