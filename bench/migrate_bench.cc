// Eager-all migration of a task holding 64 MiB .. 1 GiB of touched anonymous memory (4 KiB
// pages) between two node namespaces of a local cluster, against limits measured in the same run:
//   raw TCP:  bytes/s of a plain TCP stream between the same two namespaces;
//   populate: first touch of the same amount of fresh memory (warm, and while as much is held,
//             which is the destination's situation).
// Medians of several runs; prints a markdown table (bench/RESULTS.md keeps the latest).
//
// usage: migrate_bench [--sizes 64,512,1024] [--reps 3]
//        migrate_bench --stream-server|--stream-client ADDR BYTES TLSDIR   (used internally;
//        TLSDIR "" for plain TCP)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <openssl/ssl.h>
#include <nlohmann/json.hpp>

#include "bench_cluster.h"
#include "util/clock.h"
#include "util/proc.h"

namespace {

using ferry::Stopwatch;
using ferry::bench::median;
using ferry::bench::Out;
using ferry::bench::run;
namespace fs = std::filesystem;

// With a TLS directory the bytes go through TLS 1.3 with the cluster's node certificates (mutual
// authentication, as ferryd's gRPC channels have): what the page stream would get from TLS.
struct Tls {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  ~Tls() {
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
  }
  bool start(bool server, const std::string& dir, int fd) {
    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    std::string node = server ? "node2" : "node1";
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, (dir + "/" + node + ".pem").c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, (dir + "/" + node + ".key").c_str(), SSL_FILETYPE_PEM) !=
            1 ||
        SSL_CTX_load_verify_locations(ctx, (dir + "/ca.pem").c_str(), nullptr) != 1)
      return false;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    return (server ? SSL_accept(ssl) : SSL_connect(ssl)) == 1;
  }
};

int stream_mode(bool server, const std::string& addr, uint64_t bytes, const std::string& tls_dir) {
  auto colon = addr.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &a.sin_addr);
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1, big = 16 << 20;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  size_t chunk = 4 << 20;
  std::vector<char> buf(chunk, 7);
  Tls tls;
  if (server) {
    bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(s, 1);
    int c = accept(s, nullptr, nullptr);
    setsockopt(c, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (!tls_dir.empty() && !tls.start(true, tls_dir, c)) return 2;
    uint64_t got = 0;
    ssize_t n;
    while ((n = tls.ssl ? SSL_read(tls.ssl, buf.data(), static_cast<int>(chunk))
                        : read(c, buf.data(), chunk)) > 0)
      got += static_cast<uint64_t>(n);
    return got == bytes ? 0 : 1;
  }
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  for (int i = 0; i < 100 && connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0; i++)
    usleep(20000);
  if (!tls_dir.empty() && !tls.start(false, tls_dir, s)) return 2;
  Stopwatch sw;
  uint64_t sent = 0;
  while (sent < bytes) {
    size_t len = std::min<uint64_t>(chunk, bytes - sent);
    ssize_t n =
        tls.ssl ? SSL_write(tls.ssl, buf.data(), static_cast<int>(len)) : write(s, buf.data(), len);
    if (n <= 0) return 1;
    sent += static_cast<uint64_t>(n);
  }
  if (tls.ssl) SSL_shutdown(tls.ssl);
  shutdown(s, SHUT_WR);
  char c;
  (void)read(s, &c, 1);  // the server closes once it has everything
  std::printf("%.3f\n", sw.elapsed_ms());
  return 0;
}

// Throughput of one stream between two node namespaces, plain TCP or (tls_dir) TLS.
double stream_gbps(const std::string& self, const std::string& ns_a, const std::string& ns_b,
                   uint64_t bytes, const std::string& tls_dir = "") {
  std::string addr = "10.213.0.2:7999";
  pid_t server = fork();
  if (server == 0) {
    execlp("ip", "ip", "netns", "exec", ns_b.c_str(), self.c_str(), "--stream-server", addr.c_str(),
           std::to_string(bytes).c_str(), tls_dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // (the client retries its connect until the server listens)
  Out c = run(
      {"ip", "netns", "exec", ns_a, self, "--stream-client", addr, std::to_string(bytes), tls_dir});
  waitpid(server, nullptr, 0);
  double ms = std::atof(c.out.c_str());
  return ms > 0 ? static_cast<double>(bytes) / ms / 1e6 : 0;
}

double touch_ms(char* p, uint64_t len) {
  Stopwatch sw;
  for (uint64_t off = 0; off < len; off += 4096) p[off] = 1;
  return sw.elapsed_ms();
}

char* map_4k(uint64_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(p, len, MADV_NOHUGEPAGE);
  return static_cast<char*>(p);
}

// First touch of `len` bytes of fresh 4 KiB pages, twice: alone ("warm": the kernel hands out
// pages it just had), and while another `len` is held, as the destination must while the source
// still holds the task ("held": on this VM, memory beyond the recently used pool costs the
// hypervisor much more, see RESULTS.md).
struct Populate {
  double warm_ms, held_ms;
};
Populate populate(uint64_t len) {
  char* a = map_4k(len);
  double warm = touch_ms(a, len);
  char* b = map_4k(len);
  double held = touch_ms(b, len);
  munmap(a, len);
  munmap(b, len);
  return {warm, held};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--stream-server")
    return stream_mode(true, argv[2], std::stoull(argv[3]), argv[4]);
  if (argc == 5 && std::string(argv[1]) == "--stream-client")
    return stream_mode(false, argv[2], std::stoull(argv[3]), argv[4]);
  std::vector<int> sizes{64, 512, 1024};
  int reps = 3;
  CLI::App app{"Migration (eager-all) across two nodes against raw TCP and the populate limit"};
  app.add_option("--reps", reps, "runs of each measurement")->capture_default_str();
  app.add_option("--sizes", sizes, "MiB of memory, comma separated")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  std::string dir = "/var/tmp/ferry-migrate-bench";
  ferry::bench::BenchCluster cluster(dir);
  if (!cluster.up()) {
    std::fprintf(stderr, "cluster up failed\n");
    return 1;
  }
  std::string self = cluster.bin() + "/migrate_bench";
  std::string ns1 = cluster.netns("node1"), ns2 = cluster.netns("node2");
  auto f = [&](std::vector<std::string> args) { return cluster.ferry(std::move(args)); };
  // Why the page stream is not TLS: one stream of 512 MiB each way, alternated, medians.
  {
    std::vector<double> tcp, tls;
    for (int r = 0; r < reps; r++) {
      tcp.push_back(stream_gbps(self, ns1, ns2, 512ull << 20));
      tls.push_back(stream_gbps(self, ns1, ns2, 512ull << 20, dir + "/tls"));
    }
    std::printf(
        "| one stream, 512 MiB | GB/s |\n|---|---|\n| plain TCP | %.2f |\n| TLS 1.3, mutual auth "
        "(AES-GCM) | %.2f |\n| TLS / TCP | %.2f |\n\n",
        median(tcp), median(tls), median(tls) / median(tcp));
    std::fflush(stdout);
  }
  std::printf(
      "| memory | freeze ms | total ms | page stream GB/s | raw TCP GB/s | stream / raw | populate "
      "ms (warm) | populate ms (held) | total / (bytes/raw + populate held) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int mib : sizes) {
    uint64_t len = static_cast<uint64_t>(mib) << 20;
    std::vector<double> freeze, total, stream, raw, pop, warm, ratio;
    for (int r = 0; r < reps; r++) {
      double raw_gbps = stream_gbps(self, ns1, ns2, std::max<uint64_t>(len, 256ull << 20));
      Populate p = populate(len);
      double pop_ms = p.held_ms;
      warm.push_back(p.warm_ms);
      std::string task = cluster.start_task(mib, 0);
      Out m = f({"migrate", task, "--to", "node2", "--json"});
      f({"kill", task, "KILL"});
      if (m.status != 0) {
        std::fprintf(stderr, "migration failed: %s\n", m.out.c_str());
        continue;
      }
      auto j = nlohmann::json::parse(m.out);
      double bytes = j["bytes_sent"].get<double>();
      raw.push_back(raw_gbps);
      pop.push_back(pop_ms);
      freeze.push_back(j["freeze_ms"].get<double>());
      total.push_back(j["total_ms"].get<double>());
      stream.push_back(bytes / j["transfer_ms"].get<double>() / 1e6);
      ratio.push_back(j["total_ms"].get<double>() / (bytes / (raw_gbps * 1e6) + pop_ms));
    }
    std::printf("| %d MiB | %.1f | %.1f | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f |\n", mib,
                median(freeze), median(total), median(stream), median(raw),
                median(stream) / median(raw), median(warm), median(pop), median(ratio));
    std::fflush(stdout);
  }
  return 0;
}
