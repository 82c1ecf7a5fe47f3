// Parsers of kernel text: numbers, lines, VmFlags, and the zero-page test.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "cr/resources/memory_map.h"
#include "cr/pages.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry {

TEST(ProcTest, ParsesNumbersStrictly) {
  EXPECT_EQ(proc::parse_u64("42"), 42u);
  EXPECT_EQ(proc::parse_u64(" ff ", 16), 255u);
  EXPECT_EQ(proc::parse_u64("0x10", 16), 16u);
  EXPECT_EQ(proc::parse_i64("-7"), -7);
  EXPECT_THROW(proc::parse_u64("12abc"), Error);
  EXPECT_THROW(proc::parse_u64(""), Error);
  EXPECT_THROW(proc::parse_u64("-1"), Error);
}

TEST(ProcTest, SplitsLinesAndWords) {
  EXPECT_EQ(proc::split("a\nb\n\nc", '\n'), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(proc::split_ws("  x\t y  z\n"), (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(proc::trim("\t hi \n"), "hi");
}

TEST(ProcTest, ReadsOwnStatusAndStat) {
  auto status = proc::read_keyed("/proc/self/status");
  EXPECT_EQ(proc::parse_u64(status.at("Pid")), static_cast<uint64_t>(::getpid()));
  proc::Stat st(::getpid());
  EXPECT_EQ(st.field(4), static_cast<uint64_t>(::getppid()));
}

TEST(ProcTest, VmFlags) {
  cr::VmFlags parsed = cr::parse_vm_flags_line("rd wr mr mw me gd ac hg dd");
  uint64_t f = parsed.bits;
  EXPECT_TRUE(f & cr::kVmGrowsDown);
  EXPECT_TRUE(f & cr::kVmHugePage);
  EXPECT_TRUE(f & cr::kVmDontDump);
  EXPECT_FALSE(f & cr::kVmNoHugePage);
  EXPECT_FALSE(f & cr::kVmLocked);
  EXPECT_EQ(parsed.refused, "");
  EXPECT_EQ(parsed.names.size(), 9u);
  // Droppable memory is restored; device memory, protection keys and anything unknown are not.
  EXPECT_TRUE(cr::parse_vm_flags_line("rd wr mr mw me nr wf dd dp").bits & cr::kVmDroppable);
  EXPECT_EQ(cr::parse_vm_flags_line("rd wr mr mw me nr wf dd dp").refused, "");
  EXPECT_NE(cr::parse_vm_flags_line("rd io pf").refused.find("device memory"), std::string::npos);
  EXPECT_NE(cr::parse_vm_flags_line("rd wr p1").refused.find("protection key"), std::string::npos);
  EXPECT_NE(cr::parse_vm_flags_line("rd wr zz").refused.find("'zz'"), std::string::npos);
  EXPECT_EQ(cr::vm_flags_difference({"rd", "wr", "dp"}, {"rd", "wr", "mw"}), "-dp +mw");
  EXPECT_EQ(cr::vm_flags_difference({"rd", "sd"}, {"rd"}), "");
}

TEST(ProcTest, OwnMemoryMapIsParsed) {
  auto vmas = cr::read_vmas(::getpid());
  ASSERT_FALSE(vmas.empty());
  bool stack = false, vdso = false;
  for (auto& v : vmas) {
    EXPECT_LT(v.start, v.end);
    stack |= v.name == "[stack]" && (v.vm_flags & cr::kVmGrowsDown);
    vdso |= v.name == "[vdso]";
  }
  EXPECT_TRUE(stack);
  EXPECT_TRUE(vdso);
}

// A process's map read while it changes: the kernel may show a region twice or in its old and
// new shape within one read; what ferry takes from it is always a sorted, disjoint list.
TEST(ProcTest, MemoryMapOfAProcessThatRemapsIsConsistent) {
  constexpr size_t kPage = 4096, kSlots = 6;
  std::atomic<bool> stop{false};
  std::thread remapper([&stop] {
    void* slot[kSlots] = {};
    size_t bytes[kSlots] = {};
    for (unsigned long id = 0; !stop.load(std::memory_order_relaxed); id++) {
      size_t s = id % kSlots;
      if (slot[s]) ::munmap(slot[s], bytes[s]);
      bytes[s] = (1 + id % 13) * kPage;
      slot[s] =
          ::mmap(nullptr, bytes[s], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (slot[s] == MAP_FAILED) slot[s] = nullptr;
      if (slot[s] && id % 2) ::mprotect(slot[s], bytes[s], PROT_READ);
    }
    for (size_t s = 0; s < kSlots; s++)
      if (slot[s]) ::munmap(slot[s], bytes[s]);
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int reads = 0, torn = 0;
  for (; reads < 3000 && std::chrono::steady_clock::now() < until; reads++) {
    auto vmas = cr::read_vmas(::getpid());
    for (size_t i = 1; i < vmas.size(); i++)
      if (vmas[i].start < vmas[i - 1].end) {
        torn++;
        break;
      }
  }
  stop = true;
  remapper.join();
  EXPECT_GT(reads, 50);
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
}

TEST(ProcTest, ZeroPageDetection) {
  std::vector<uint64_t> page(512, 0);
  EXPECT_TRUE(cr::is_zero_page(page.data()));
  page[300] = 1;
  EXPECT_FALSE(cr::is_zero_page(page.data()));
  page[300] = 0;
  page[511] = 1ull << 63;
  EXPECT_FALSE(cr::is_zero_page(page.data()));
}

}  // namespace ferry
