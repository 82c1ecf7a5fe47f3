// The recorded map checked again: a snapshot's forked copy or a frozen migrating task whose
// regions or advice differ from the map recorded at the pause is caught (the recording fails)
// rather than recorded wrong.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "cr/resources/map_check.h"
#include "cr/resources/memory_map.h"

namespace ferry::cr {
namespace {

constexpr size_t kLen = 4 * 4096;

// A child holding `region` (inherited), which changes it when told and then waits to be killed.
class Child {
 public:
  explicit Child(char* region) {
    int to[2], from[2];
    EXPECT_EQ(::pipe(to), 0);
    EXPECT_EQ(::pipe(from), 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      char what = 0;
      if (::read(to[0], &what, 1) != 1) ::_exit(1);
      int r = 0;
      if (what == 'w') r = ::madvise(region, kLen, MADV_WIPEONFORK);
      if (what == 'd') r = ::madvise(region, kLen, MADV_DONTFORK);
      if (what == 'h') r = ::madvise(region, kLen, MADV_NOHUGEPAGE);
      if (what == 'x') r = ::madvise(region, kLen, MADV_DONTDUMP);
      if (what == 'u') r = ::munmap(region, kLen);
      char done = r == 0 ? 'y' : 'n';
      if (::write(from[1], &done, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(to[0]);
    ::close(from[1]);
    to_ = to[1];
    from_ = from[0];
  }
  ~Child() {
    ::close(to_);
    ::close(from_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // The child changes its region ('-' leaves it as it is); true once it did.
  bool change(char what) {
    char done = 0;
    return ::write(to_, &what, 1) == 1 && ::read(from_, &done, 1) == 1 && done == 'y';
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

image::Memory recorded_map_of(pid_t pid) {
  image::Memory m;
  for (auto& v : read_vmas(pid)) {
    image::Vma* out = m.add_vmas();
    out->set_start(v.start);
    out->set_end(v.end);
    out->set_vm_flags(v.vm_flags);
    out->set_flags(v.flags);
  }
  return m;
}

// What the check says of a child whose region changed after its map was recorded ("": nothing).
// `frozen`: the check of a frozen task itself, else that of a snapshot's forked copy.
std::string failure_after(char change, bool frozen = false) {
  // Between two inaccessible pages of its own, so that it merges with no neighbour.
  char* guarded = static_cast<char*>(
      ::mmap(nullptr, kLen + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  EXPECT_NE(guarded, MAP_FAILED);
  void* p = ::mmap(guarded + 4096, kLen, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  EXPECT_EQ(p, guarded + 4096);
  std::string why = "(not checked)";
  {
    Child child(static_cast<char*>(p));
    image::Memory recorded = recorded_map_of(child.pid());
    EXPECT_TRUE(child.change(change)) << change;
    try {
      if (frozen)
        check_frozen_task_has_the_recorded_map(child.pid(), recorded, false);
      else
        check_copy_has_the_recorded_map(child.pid(), recorded);
      why.clear();
    } catch (const std::exception& e) {
      why = e.what();
    }
  }
  ::munmap(guarded, kLen + 2 * 4096);
  return why;
}

TEST(MapCheckTest, AnUnchangedCopyPasses) {
  EXPECT_EQ(failure_after('-'), "");
}

TEST(MapCheckTest, ARegionWipedInTheCopyIsCaught) {
  std::string why = failure_after('w');
  EXPECT_NE(why.find("MADV_WIPEONFORK"), std::string::npos) << why;
  EXPECT_NE(why.find("take the snapshot again"), std::string::npos) << why;
}

TEST(MapCheckTest, ARegionMissingFromTheCopyIsCaught) {
  std::string why = failure_after('u');
  EXPECT_NE(why.find("is not in the copy"), std::string::npos) << why;
}

TEST(MapCheckTest, AdviceThatDiffersIsCaught) {
  std::string why = failure_after('h');
  EXPECT_NE(why.find("nh"), std::string::npos) << why;
  EXPECT_NE(why.find("in the copy"), std::string::npos) << why;
  std::string dontfork = failure_after('d');  // (a copy made now would leave it out)
  EXPECT_NE(dontfork.find("dc"), std::string::npos) << dontfork;
}

TEST(MapCheckTest, AFrozenTaskWhoseAdviceChangedIsCaughtAndAnUnchangedOnePasses) {
  EXPECT_EQ(failure_after('-', true), "");
  std::string why = failure_after('x', true);
  EXPECT_NE(why.find("dd"), std::string::npos) << why;
  EXPECT_NE(why.find("try again"), std::string::npos) << why;
  // The task itself keeps a wipe-on-fork region: only its advice changed.
  std::string wiped = failure_after('w', true);
  EXPECT_NE(wiped.find("wf"), std::string::npos) << wiped;
  EXPECT_EQ(wiped.find("was wiped"), std::string::npos) << wiped;
}

}  // namespace
}  // namespace ferry::cr
