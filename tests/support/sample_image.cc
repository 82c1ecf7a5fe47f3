#include "support/sample_image.h"

#include <sys/mman.h>
#include <sys/user.h>

#include <vector>

#include "image/image_files.h"

namespace ferry::test {

const image::ImageKey& sample_key() {
  static const image::ImageKey key = image::derive_image_key("sample", 6);
  return key;
}

image::Image write_sample_image(const std::string& dir) {
  image::ImageWriter w(dir, sample_key());
  image::Image img;
  auto* p = img.mutable_process();
  p->set_pid(4242);
  p->set_comm("sample");
  p->set_exe_path("/usr/bin/sample");
  user_regs_struct regs{};
  regs.rip = 0x401000;
  img.mutable_registers()->set_gpr(std::string(reinterpret_cast<char*>(&regs), sizeof regs));
  img.mutable_registers()->set_xstate(std::string(2432, '\0'));
  auto* m = img.mutable_memory();
  m->set_task_size((1ull << 47) - 4096);
  struct R {
    uint64_t s, e;
    uint32_t prot;
    image::Vma::Kind k;
  };
  for (R r :
       {R{0x400000, 0x410000, PROT_READ | PROT_EXEC, image::Vma::FILE_PRIVATE},
        R{0x600000, 0x800000, PROT_READ | PROT_WRITE, image::Vma::ANON_PRIVATE},
        R{0x7f0000000000, 0x7f0000100000, PROT_READ | PROT_WRITE, image::Vma::ANON_PRIVATE}}) {
    auto* v = m->add_vmas();
    v->set_start(r.s);
    v->set_end(r.e);
    v->set_prot(r.prot);
    v->set_kind(r.k);
    if (r.k == image::Vma::FILE_PRIVATE) v->set_file_id(1);
  }
  auto* mf = m->add_mapped_files();
  mf->set_id(1);
  mf->set_path("/usr/bin/sample");
  std::vector<char> page(4096);
  auto add_run = [&](uint64_t addr, int n, char fill) {
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
      std::fill(page.begin(), page.end(), static_cast<char>(fill + i));
      uint64_t o = w.pages().append(page.data(), page.size());
      if (i == 0) off = o;
    }
    auto* run = m->add_pages();
    run->set_addr(addr);
    run->set_npages(static_cast<uint64_t>(n));
    run->set_data_offset(off);
  };
  add_run(0x600000, 3, 'a');
  add_run(0x610000, 300, 'b');
  add_run(0x7f0000004000, 2, 'c');
  m->mutable_mm()->set_start_brk(0x800000);
  m->mutable_mm()->set_brk(0x800000);
  auto* ft = img.mutable_files();
  auto* f = ft->add_files();
  f->set_id(1);
  f->mutable_regular()->set_path("/tmp/sample.txt");
  auto* fd = ft->add_fds();
  fd->set_num(3);
  fd->set_file_id(1);
  auto* a = img.mutable_signals()->add_actions();
  a->set_signo(10);
  a->set_handler(0x401234);
  for (int i = 0; i < 4; i++) {
    img.mutable_creds()->add_uids(1000);
    img.mutable_creds()->add_gids(1000);
  }
  img.mutable_attrs()->set_cwd("/tmp");
  img.mutable_attrs()->set_umask(022);
  w.commit(img, false);
  return img;
}

}  // namespace ferry::test
