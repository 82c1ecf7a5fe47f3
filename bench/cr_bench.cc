// Checkpoint/restore performance of one process holding 64 MiB .. 2 GiB of touched anonymous
// memory, in 4 KiB pages and in THP, against limits measured in the same run:
//   read limit:     process_vm_readv of the same memory + write() to the image's file system
//   populate limit: first touch of the same amount of fresh memory with the same page size
// Medians of several runs. Prints a markdown table (bench/RESULTS.md keeps the latest).
//
// usage: cr_bench [--sizes 64,512,2048] [--reps 5] [--dir /var/tmp]
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cr/checkpoint.h"
#include "cr/restore.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/mapping.h"
#include "util/proc.h"

namespace {

using ferry::Stopwatch;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Target {
  pid_t pid;
  uint64_t addr;
};

Target start_target(const std::string& exe, int mib, bool thp) {
  int p[2];
  if (pipe(p)) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 2);
    for (int fd = 3; fd < 1024; fd++) close(fd);
    std::string m = std::to_string(mib);
    execl(exe.c_str(), exe.c_str(), m.c_str(), thp ? "thp" : "4k", nullptr);
    _exit(127);
  }
  close(p[1]);
  char buf[64] = {};
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  if (n <= 0) throw std::runtime_error("bench target did not start");
  return {pid, std::strtoull(buf, nullptr, 16)};
}

// process_vm_readv in 8 MiB pieces into one buffer, each piece written to a file in dir.
double read_limit_ms(const Target& t, uint64_t len, const std::string& dir) {
  std::string path = dir + "/read-limit.bin";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ferry::Mapping buf = ferry::Mapping::anonymous(8 << 20, true);
  std::memset(buf.data(), 1, buf.size());
  Stopwatch sw;
  for (uint64_t off = 0; off < len; off += buf.size()) {
    iovec local{buf.data(), buf.size()}, remote{reinterpret_cast<void*>(t.addr + off), buf.size()};
    if (process_vm_readv(t.pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(buf.size()))
      throw std::runtime_error("process_vm_readv");
    if (write(fd, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()))
      throw std::runtime_error("write");
  }
  double ms = sw.elapsed_ms();
  close(fd);
  unlink(path.c_str());
  return ms;
}

double populate_limit_ms(uint64_t len, bool thp) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  char* c = static_cast<char*>(p);
  Stopwatch sw;
  for (uint64_t off = 0; off < len; off += 4096) c[off] = 1;
  double ms = sw.elapsed_ms();
  munmap(p, len);
  return ms;
}

void reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes{64, 512, 2048};
  int reps = 5;
  std::string base = "/var/tmp";
  CLI::App app{"Checkpoint and restore of one process against memcpy and the populate limit"};
  app.add_option("--reps", reps, "runs of each measurement")->capture_default_str();
  app.add_option("--dir", base, "where the images go")->capture_default_str();
  app.add_option("--sizes", sizes, "MiB of memory, comma separated")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (std::getenv("FERRY_BENCH_DEBUG")) spdlog::set_level(spdlog::level::debug);
  std::string exe = std::filesystem::path(argv[0]).parent_path() / "bench_target";
  std::string dir = base + "/ferry-bench";
  std::filesystem::create_directories(dir);

  std::printf(
      "| memory | pages | freeze ms | checkpoint ms | read limit ms | ckpt / limit | restore ms | "
      "populate limit ms | restore / limit | image MiB | image / data |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int mib : sizes) {
    for (bool thp : {false, true}) {
      uint64_t len = static_cast<uint64_t>(mib) << 20;
      std::vector<double> freeze, ckpt, rlim, rest, plim, image;
      for (int r = 0; r < reps; r++) {
        Target t = start_target(exe, mib, thp);
        std::string img = dir + "/image";
        auto dump = [&](bool leave_running) {
          std::filesystem::remove_all(img);
          ferry::cr::CheckpointOptions co;
          co.images_dir = img;
          co.leave_running = leave_running;
          auto cres = ferry::cr::checkpoint(t.pid, co);
          freeze.push_back(cres.freeze_us / 1000.0);
          ckpt.push_back(cres.total_us / 1000.0);
          image.push_back(static_cast<double>(cres.image_bytes));
        };
        // Limit and checkpoint alternate, each writing where the other's freed file just was:
        // in a VM the first use of a fresh page is several times slower than its reuse, and
        // both must meet the same conditions. The first limit pass only warms up.
        read_limit_ms(t, len, dir);
        for (int k = 0; k < 2; k++) {
          dump(true);
          std::filesystem::remove_all(img);
          rlim.push_back(read_limit_ms(t, len, dir));
        }
        dump(false);
        waitpid(t.pid, nullptr, 0);
        plim.push_back(populate_limit_ms(len, thp));
        ferry::cr::RestoreOptions ro;
        ro.images_dir = img;
        auto rres = ferry::cr::restore(ro);
        rest.push_back(rres.restore_us / 1000.0);
        reap(rres.pid);
      }
      double data = static_cast<double>(len);
      std::printf(
          "| %d MiB | %s | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f | %.4f |\n", mib,
          thp ? "THP" : "4 KiB", median(freeze), median(ckpt), median(rlim),
          median(ckpt) / median(rlim), median(rest), median(plim), median(rest) / median(plim),
          median(image) / 1048576.0, median(image) / data);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
