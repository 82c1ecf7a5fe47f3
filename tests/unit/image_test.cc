// The image files: written atomically, read back exactly, and every kind of bad value refused by
// validation with a message that names it.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "image/image_files.h"
#include "image/verified_pages.h"
#include "image/validate.h"
#include "support/harness.h"
#include "support/sample_image.h"
#include "util/error.h"

namespace ferry::image {
namespace {

std::string error_of(const Image& img, uint64_t pages_size) {
  try {
    validate(img, pages_size);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ImageTest, WrittenImageReadsBackIdentically) {
  test::TempDir dir;
  Image written = test::write_sample_image(dir.path());
  LoadedImage loaded = load_image(dir.path(), test::sample_key());
  EXPECT_EQ(loaded.image.SerializeAsString(), written.SerializeAsString());
  EXPECT_NO_THROW(verify_pages(loaded));
}

TEST(ImageTest, UncommittedWriterLeavesNoImage) {
  test::TempDir dir;
  {
    ImageWriter w(dir.path(), test::sample_key());
    std::vector<char> page(4096, 'x');
    w.pages().append(page.data(), page.size());
    // destroyed without commit: as if ferry died mid-write
  }
  EXPECT_THROW(load_image(dir.path(), test::sample_key()), Error);
  // and no temporary file is left behind
  EXPECT_EQ(test::read_file(dir / "pages.img"), "");
}

TEST(ImageTest, ANewImageReplacesAnOldOneCompletely) {
  test::TempDir dir;
  test::write_sample_image(dir.path());
  Image second = test::write_sample_image(dir.path());
  LoadedImage loaded = load_image(dir.path(), test::sample_key());
  EXPECT_EQ(loaded.image.image_id(), second.image_id());
}

TEST(ImageTest, ValidationNamesEveryBadValue) {
  test::TempDir dir;
  Image good = test::write_sample_image(dir.path());
  uint64_t psize = good.pages_file().size();
  ASSERT_EQ(error_of(good, psize), "");

  struct Case {
    const char* name;
    std::function<void(Image&)> mutate;
    const char* expect;
  };
  std::vector<Case> cases = {
      {"unaligned region",
       [](Image& i) { i.mutable_memory()->mutable_vmas(0)->set_start(0x400123); },
       "not page aligned"},
      {"overlapping regions",
       [](Image& i) { i.mutable_memory()->mutable_vmas(1)->set_start(i.memory().vmas(0).start()); },
       "overlap"},
      {"region in kernel space",
       [](Image& i) { i.mutable_memory()->mutable_vmas(2)->set_end(0xffff800000000000ull); },
       "outside the user address space"},
      {"bad protection", [](Image& i) { i.mutable_memory()->mutable_vmas(0)->set_prot(0x10); },
       "protection"},
      {"run outside regions",
       [](Image& i) { i.mutable_memory()->mutable_pages(0)->set_addr(0x100000); },
       "outside every memory region"},
      {"run past pages.img",
       [](Image& i) { i.mutable_memory()->mutable_pages(2)->set_npages(200); },
       "points outside pages.img"},
      {"run data overlap",
       [](Image& i) {
         i.mutable_memory()->mutable_pages(1)->set_data_offset(i.memory().pages(0).data_offset());
       },
       "share data"},
      {"zero-page run", [](Image& i) { i.mutable_memory()->mutable_pages(0)->set_npages(0); },
       "empty page run"},
      {"pages.img size",
       [](Image& i) { i.mutable_pages_file()->set_size(i.pages_file().size() + 4096); },
       "pages.img has"},
      {"duplicate fd", [](Image& i) { *i.mutable_files()->add_fds() = i.files().fds(0); },
       "duplicate fd"},
      {"fd to missing file", [](Image& i) { i.mutable_files()->mutable_fds(0)->set_file_id(999); },
       "missing open file"},
      {"relative path",
       [](Image& i) {
         i.mutable_files()->mutable_files(0)->mutable_regular()->set_path("etc/passwd");
       },
       "not absolute"},
      {"bad signal", [](Image& i) { i.mutable_signals()->add_actions()->set_signo(9); },
       "signal action"},
      {"bad siginfo", [](Image& i) { i.mutable_signals()->add_pending_shared()->set_siginfo("x"); },
       "siginfo"},
      {"credentials", [](Image& i) { i.mutable_creds()->clear_uids(); }, "4 uids"},
      {"uid -1 (setresuid keeps root)",
       [](Image& i) { i.mutable_creds()->set_uids(1, 4294967295u); }, "4294967295"},
      {"gid -1", [](Image& i) { i.mutable_creds()->set_gids(0, 4294967295u); }, "4294967295"},
      {"group -1", [](Image& i) { i.mutable_creds()->add_groups(4294967295u); }, "4294967295"},
      {"chroot", [](Image& i) { i.mutable_attrs()->set_root("/srv/jail"); }, "chroot"},
      {"unknown capability", [](Image& i) { i.mutable_creds()->set_cap_permitted(1ull << 50); },
       "capability"},
      {"register block", [](Image& i) { i.mutable_registers()->set_gpr("short"); },
       "register block"},
      {"umask", [](Image& i) { i.mutable_attrs()->set_umask(01000); }, "umask"},
      {"rlimit",
       [](Image& i) {
         auto* r = i.mutable_attrs()->add_rlimits();
         r->set_resource(99);
       },
       "resource limit"},
      {"mm fields",
       [](Image& i) {
         i.mutable_memory()->mutable_mm()->set_start_brk(i.memory().mm().brk() + 4096);
       },
       "mm fields"},
      {"pid", [](Image& i) { i.mutable_process()->set_pid(-5); }, "bad pid"},
      {"pipe overfull",
       [](Image& i) {
         auto* p = i.mutable_files()->add_pipes();
         p->set_id(77);
         p->set_capacity(4);
         p->set_queued("too many");
       },
       "pipe holds"},
      // Issue 9: what new kinds of state may not name.
      {"ghost owned by -1",
       [](Image& i) {
         auto* g = i.mutable_memory()->add_ghosts();
         g->set_id(99);
         g->set_path("/tmp/x");
         g->set_uid(4294967295u);
       },
       "owned by id -1"},
      {"epoll watch of a missing file",
       [](Image& i) {
         auto* f = i.mutable_files()->add_files();
         f->set_id(99);
         auto* t = f->mutable_epoll()->add_targets();
         t->set_fd(5);
         t->set_holder_fd(977);
         auto* fd = i.mutable_files()->add_fds();
         fd->set_num(900);
         fd->set_file_id(99);
       },
       "whose file is not in the table"},
      {"socket of an unknown family",
       [](Image& i) {
         auto* f = i.mutable_files()->add_files();
         f->set_id(99);
         f->mutable_socket()->set_family(17);
         f->mutable_socket()->set_type(1);
       },
       "socket of family 17"},
      {"socket message passing a missing file",
       [](Image& i) {
         auto* f = i.mutable_files()->add_files();
         f->set_id(99);
         f->mutable_socket()->set_family(1);
         f->mutable_socket()->set_type(1);
         f->mutable_socket()->add_queue()->add_files(12345);
       },
       "passes a missing open file"},
      {"pty slave without master",
       [](Image& i) {
         auto* f = i.mutable_files()->add_files();
         f->set_id(99);
         f->mutable_pty()->set_index(4);
       },
       "without its master"},
      // A channel's end names the number ferry gave it; a pipe ferry gave is only a channel's.
      {"channel socket without its number",
       [](Image& i) {
         auto* f = i.mutable_files()->add_files();
         f->set_id(99);
         f->mutable_provided()->set_what("channel");
       },
       "a channel's end without its number"},
      {"channel pipe at a negative number",
       [](Image& i) {
         auto* p = i.mutable_files()->add_pipes();
         p->set_id(77);
         p->mutable_provided()->set_what("channel");
         p->mutable_provided()->set_channel_fd(-1);
       },
       "a channel's end without its number"},
      {"channel pipe with socket options",
       [](Image& i) {
         auto* p = i.mutable_files()->add_pipes();
         p->set_id(77);
         p->mutable_provided()->set_what("channel");
         p->mutable_provided()->set_channel_fd(1);
         p->mutable_provided()->add_options()->set_level(1);
       },
       "malformed descriptor ferry provided"},
      {"pipe given as a control descriptor",
       [](Image& i) {
         auto* p = i.mutable_files()->add_pipes();
         p->set_id(77);
         p->mutable_provided()->set_what("control");
       },
       "unknown descriptor ferry provided"},
  };
  for (auto& c : cases) {
    Image bad = good;
    c.mutate(bad);
    std::string err = error_of(bad, psize);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.name << ": got '" << err << "'";
  }
}

TEST(ImageTest, PageCorruptionIsFoundByVerify) {
  test::TempDir dir;
  test::write_sample_image(dir.path());
  int fd = ::open((dir / "pages.img").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, 4096 + 5000), 1);
  c ^= 0x80;
  ASSERT_EQ(::pwrite(fd, &c, 1, 4096 + 5000), 1);
  ::close(fd);
  LoadedImage loaded = load_image(dir.path(), test::sample_key());  // metadata still fine
  EXPECT_THROW(verify_pages(loaded), Error);
}

}  // namespace ferry::image
