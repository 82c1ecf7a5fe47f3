// Reading another process's pages (cr/remote_memory.h): what is shared with another process
// stays shared, and a read stops where the memory ends.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cr/remote_memory.h"
#include "support/harness.h"
#include "util/error.h"

namespace ferry::test {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kLen = 8u << 20;

// A child holding a copy of `len` bytes at `m` (shared with this process until either writes),
// killed and reaped at the end.
class ForkedChild {
 public:
  ForkedChild() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  ~ForkedChild() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

struct Memory {
  Memory() {
    m = static_cast<char*>(
        ::mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t off = 0; off < kLen; off += kPage)
      std::memset(m + off, 'a' + off / kPage % 26, kPage);
  }
  ~Memory() { ::munmap(m, kLen); }
  char* m;
};

TEST(RemoteMemoryTest, SharedPagesReadAsSharedStaySharedAndReadTheSame) {
  Memory mem;
  ASSERT_NE(mem.m, MAP_FAILED);
  ForkedChild child;
  const uint64_t start = reinterpret_cast<uint64_t>(mem.m), pages = kLen / kPage;
  ASSERT_EQ(shared_pages(child.pid(), start, start + kLen), pages);
  cr::RemoteMemory memory(child.pid());
  std::vector<char> buf(kLen);
  ASSERT_EQ(memory.read_some(start, buf.data(), kLen, true), kLen);
  EXPECT_EQ(std::memcmp(buf.data(), mem.m, kLen), 0);
  EXPECT_EQ(shared_pages(child.pid(), start, start + kLen), pages);
  // What the kernel does to them through process_vm_readv (why `shared` exists): the child
  // comes to own a copy of each page read.
  ASSERT_EQ(memory.read_some(start, buf.data(), kLen, false), kLen);
  EXPECT_EQ(std::memcmp(buf.data(), mem.m, kLen), 0);
  EXPECT_EQ(shared_pages(child.pid(), start, start + kLen), 0u);
}

TEST(RemoteMemoryTest, AReadStopsWhereTheMemoryEndsEitherWay) {
  // Two pages mapped, the third not: a read of three returns two.
  char* m = static_cast<char*>(
      ::mmap(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  std::memset(m, 'x', 2 * kPage);
  ASSERT_EQ(::munmap(m + 2 * kPage, kPage), 0);
  ForkedChild child;
  std::vector<char> buf(3 * kPage);
  for (bool shared : {false, true}) {
    cr::RemoteMemory memory(child.pid());
    EXPECT_EQ(memory.read_some(reinterpret_cast<uint64_t>(m), buf.data(), buf.size(), shared),
              2 * kPage)
        << "shared " << shared;
    EXPECT_EQ(buf[2 * kPage - 1], 'x');
  }
  ::munmap(m, 2 * kPage);
}

TEST(RemoteMemoryTest, SpansAreReadOneAfterTheOtherAndAMissingOneIsAnError) {
  Memory mem;
  ASSERT_NE(mem.m, MAP_FAILED);
  const size_t last = kLen / kPage - 1;
  ASSERT_EQ(::munmap(mem.m + last * kPage, kPage), 0);  // a hole the child has too
  ForkedChild child;
  // Pages 5, 1 and 7-8 (out of order on purpose) land in that order, either way.
  auto at = [&](size_t page) { return static_cast<void*>(mem.m + page * kPage); };
  std::vector<iovec> spans = {{at(5), kPage}, {at(1), kPage}, {at(7), 2 * kPage}};
  for (bool shared : {true, false}) {
    cr::RemoteMemory memory(child.pid());
    std::vector<char> buf(4 * kPage, 0);
    memory.read_spans(spans, buf.data(), shared);
    EXPECT_EQ(std::memcmp(buf.data(), at(5), kPage), 0) << "shared " << shared;
    EXPECT_EQ(std::memcmp(buf.data() + kPage, at(1), kPage), 0) << "shared " << shared;
    EXPECT_EQ(std::memcmp(buf.data() + 2 * kPage, at(7), 2 * kPage), 0) << "shared " << shared;
    // A span running into the hole: an error, not a short read.
    std::vector<iovec> past = {{at(last - 1), 2 * kPage}};
    std::vector<char> big(2 * kPage);
    EXPECT_THROW(memory.read_spans(past, big.data(), shared), Error) << "shared " << shared;
  }
}

}  // namespace
}  // namespace ferry::test
