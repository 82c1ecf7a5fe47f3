#include "cr/verify.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>

#include <map>
#include <set>

#include "cr/resources/memory_map.h"
#include "cr/resources/vm_flags.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr uint64_t kPage = 4096;

[[noreturn]] void differs(const std::string& what) {
  fail("the restored process differs from its image: {}", what);
}

// A region as both sides are compared: attributes that a program can see, and its extent.
struct Region {
  uint64_t start = 0, end = 0;
  uint32_t prot = 0;
  bool shared = false;
  uint64_t offset = 0;  // in bytes, for file mappings (0 otherwise)
  bool file = false;
  std::string name;
  std::set<std::string> flags;
};

std::string describe(const Region& r) {
  return fmt::format("memory region {:x}-{:x} {}", r.start, r.end, r.name);
}

bool same_attributes(const Region& a, const Region& b) {
  return a.prot == b.prot && a.shared == b.shared && a.file == b.file && a.name == b.name &&
         a.flags == b.flags;
}

// Adjacent regions with the same attributes (and, for files, contiguous offsets) as one: the
// kernel merges or splits regions for reasons of its own (anon_vma identity) that no program
// can see, and they are not what a restore must reproduce.
std::vector<Region> coalesced(std::vector<Region> in) {
  std::vector<Region> out;
  for (Region& r : in) {
    if (!out.empty()) {
      Region& last = out.back();
      if (last.end == r.start && same_attributes(last, r) &&
          (!r.file || last.offset + (last.end - last.start) == r.offset)) {
        last.end = r.end;
        continue;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::set<std::string> flag_set(const std::string& line) {
  std::set<std::string> out;
  for (auto& f : proc::split_ws(line)) out.insert(f);
  return out;
}

void verify_memory(pid_t pid, const image::Memory& m, const VerifyOptions& o) {
  std::set<uint64_t> ghost_files;
  for (auto& mf : m.mapped_files())
    if (mf.ghost_id()) ghost_files.insert(mf.id());
  std::vector<Region> want, have;
  for (const image::Vma& v : m.vmas()) {
    if (v.flags().empty()) return;  // (an image from before flags were kept: nothing to compare)
    Region r;
    r.start = v.start();
    r.end = v.end();
    r.prot = v.prot();
    r.shared = v.kind() == image::Vma::ANON_SHARED || v.kind() == image::Vma::FILE_SHARED;
    r.file = v.kind() == image::Vma::FILE_PRIVATE || v.kind() == image::Vma::FILE_SHARED;
    r.offset = r.file ? v.pgoff() * kPage : 0;
    r.name = v.name();
    r.flags = flag_set(v.flags());
    want.push_back(r);
  }
  for (VmaInfo& v : read_vmas(pid)) {
    Region r;
    r.start = v.start;
    r.end = v.end;
    r.prot = v.prot;
    r.shared = v.shared;
    r.file = v.ino != 0;
    r.offset = r.file ? v.offset : 0;
    r.name = v.name;
    r.flags = flag_set(v.flags);
    if (o.lazy) r.flags.erase("um");  // the pager's registration, not the process's
    have.push_back(r);
  }
  // The file-ness as the image sees it (memfds and shared memory are "files" to the kernel).
  for (Region& r : have)
    for (const Region& w : want)
      if (w.start <= r.start && r.start < w.end) {
        r.file = w.file;
        if (!r.file) r.offset = 0;
      }
  // An unlinked file re-created under another name (its own was taken) shows that name.
  for (const image::Vma& v : m.vmas())
    if (ghost_files.count(v.file_id()))
      for (Region& r : have)
        if (r.start >= v.start() && r.end <= v.end() && r.name != v.name() &&
            r.name.rfind(v.name().substr(0, v.name().size() - 10), 0) == 0)
          r.name = v.name();
  std::vector<Region> a = coalesced(want), b = coalesced(have);
  for (size_t i = 0; i < std::max(a.size(), b.size()); i++) {
    if (i >= a.size()) differs("it has " + describe(b[i]) + ", which the image does not");
    if (i >= b.size()) differs(describe(a[i]) + " is missing");
    const Region& w = a[i];
    const Region& g = b[i];
    if (w.start != g.start || w.end != g.end)
      differs(fmt::format("{} is {:x}-{:x} now", describe(w), g.start, g.end));
    if (w.prot != g.prot || w.shared != g.shared)
      differs(describe(w) + " has another protection or sharing");
    if (w.offset != g.offset) differs(describe(w) + " maps another part of its file");
    if (w.name != g.name) differs(fmt::format("{} is named '{}' now", describe(w), g.name));
    std::string diff = vm_flags_difference(w.flags, g.flags);
    if (!diff.empty()) differs(fmt::format("{} has other flags ({})", describe(w), diff));
  }
}

uint64_t mask_of(const std::string& hex) {
  return proc::parse_u64(hex, 16);
}

void verify_status(pid_t pid, const image::Image& img) {
  auto st = proc::read_keyed(proc::path(pid, "status"));
  const image::Credentials& c = img.creds();
  auto ids = [&](const char* key) {
    std::vector<uint32_t> out;
    for (auto& w : proc::split_ws(st[key]))
      out.push_back(static_cast<uint32_t>(proc::parse_u64(w)));
    return out;
  };
  if (ids("Uid") != std::vector<uint32_t>(c.uids().begin(), c.uids().end()) ||
      ids("Gid") != std::vector<uint32_t>(c.gids().begin(), c.gids().end()))
    differs("its user or group ids");
  std::multiset<uint32_t> groups(c.groups().begin(), c.groups().end()), now;
  for (uint32_t g : ids("Groups")) now.insert(g);
  if (groups != now) differs("its supplementary groups");
  if (mask_of(st["CapInh"]) != c.cap_inheritable() || mask_of(st["CapPrm"]) != c.cap_permitted() ||
      mask_of(st["CapEff"]) != c.cap_effective() || mask_of(st["CapBnd"]) != c.cap_bounding() ||
      mask_of(st["CapAmb"]) != c.cap_ambient())
    differs("its capabilities");
  if ((proc::parse_u64(st["NoNewPrivs"]) != 0) != c.no_new_privs()) differs("no_new_privs");
  if (proc::parse_u64(st["Umask"], 8) != img.attrs().umask()) differs("its umask");
  uint64_t ignored = 0, caught = 0;
  for (auto& a : img.signals().actions()) {
    uint64_t bit = 1ull << (a.signo() - 1);
    if (a.handler() == reinterpret_cast<uint64_t>(SIG_IGN))
      ignored |= bit;
    else if (a.handler() != reinterpret_cast<uint64_t>(SIG_DFL))
      caught |= bit;
  }
  if (mask_of(st["SigIgn"]) != ignored || mask_of(st["SigCgt"]) != caught)
    differs(
        fmt::format("its signal dispositions (ignored {:#x}, caught {:#x}; the image: {:#x}, "
                    "{:#x})",
                    mask_of(st["SigIgn"]), mask_of(st["SigCgt"]), ignored, caught));
  if (mask_of(st["SigBlk"]) != img.signals().blocked()) differs("its blocked signal mask");
  auto number = [&](const char* file) {
    return proc::parse_i64(std::string(proc::trim(proc::read_file(proc::path(pid, file)))));
  };
  if (number("oom_score_adj") != img.attrs().oom_score_adj()) differs("its oom_score_adj");
  if (img.attrs().has_loginuid() &&
      static_cast<uint32_t>(number("loginuid")) != img.attrs().loginuid())
    differs("its audit login uid");
}

// What the restore gave the restorer's own description for: a terminal, and a pipe to the
// outside on fds 0-2 that the caller gave nothing for (files/pipes.cc). Its status flags are that
// description's.
bool restorers_own(const image::Image& img, const image::OpenFile& f, int num,
                   const std::set<int>& provided) {
  if (f.kind_case() == image::OpenFile::kTerminal) return true;
  if (provided.count(num)) return false;
  if (f.kind_case() != image::OpenFile::kPipe || num > 2) return false;
  for (auto& p : img.files().pipes())
    if (p.id() == f.pipe().pipe_id()) return p.external();
  return false;
}

void verify_files(pid_t pid, const image::Image& img, const std::set<int>& provided) {
  std::map<uint64_t, const image::OpenFile*> files;
  for (auto& f : img.files().files()) files[f.id()] = &f;
  std::set<int> want, have;
  for (auto& fd : img.files().fds()) want.insert(fd.num());
  for (auto& n : proc::list_dir(proc::path(pid, "fd")))
    have.insert(static_cast<int>(proc::parse_u64(n)));
  if (want != have) {
    for (int n : have)
      if (!want.count(n)) differs(fmt::format("it holds fd {}, which the image does not", n));
    for (int n : want)
      if (!have.count(n)) differs(fmt::format("fd {} is missing", n));
  }
  for (auto& fd : img.files().fds()) {
    const image::OpenFile& f = *files.at(fd.file_id());
    auto info = proc::read_keyed(proc::path(pid, fmt::format("fdinfo/{}", fd.num())));
    uint32_t flags = static_cast<uint32_t>(proc::parse_u64(info.at("flags"), 8));
    bool cloexec = flags & O_CLOEXEC;
    flags &= ~static_cast<uint32_t>(O_CLOEXEC);
    if (!restorers_own(img, f, fd.num(), provided) && flags != f.flags())
      differs(
          fmt::format("fd {} has status flags {:o}, the image {:o}", fd.num(), flags, f.flags()));
    if (cloexec != fd.cloexec()) differs(fmt::format("fd {} close-on-exec", fd.num()));
    bool seekable = f.kind_case() == image::OpenFile::kRegular ||
                    f.kind_case() == image::OpenFile::kMemfd ||
                    f.kind_case() == image::OpenFile::kDirectory;
    if (seekable && !(f.flags() & O_PATH) && proc::parse_i64(info.at("pos")) != f.pos())
      differs(
          fmt::format("fd {} is at offset {}, the image at {}", fd.num(), info.at("pos"), f.pos()));
  }
}

}  // namespace

void verify_restored(pid_t pid, const image::Image& img, const VerifyOptions& options) {
  verify_memory(pid, img.memory(), options);
  verify_status(pid, img);
  verify_files(pid, img, options.provided_fds);
  std::string cwd = proc::read_link(proc::path(pid, "cwd"));
  if (cwd != img.attrs().cwd()) differs(fmt::format("its working directory is {}", cwd));
}

}  // namespace ferry::cr
