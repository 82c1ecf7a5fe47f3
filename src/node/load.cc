#include "node/load.h"

#include <unistd.h>

#include "util/proc.h"

namespace ferry::node {

LoadSample LoadSampler::sample() {
  LoadSample s;
  s.cpus = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
  auto stat = proc::try_read_file("/proc/stat").value_or("");
  auto fields = proc::split_ws(stat.substr(0, stat.find('\n')));
  if (fields.size() >= 8 && fields[0] == "cpu") {
    uint64_t total = 0, idle = 0;
    for (size_t i = 1; i < fields.size(); i++) {
      uint64_t v = proc::parse_u64(fields[i]);
      total += v;
      if (i == 4 || i == 5) idle += v;  // idle, iowait
    }
    uint64_t busy = total - idle;
    if (last_total_ && total > last_total_)
      s.cpu_percent =
          100.0 * static_cast<double>(busy - last_busy_) / static_cast<double>(total - last_total_);
    last_busy_ = busy;
    last_total_ = total;
  }
  auto loadavg = proc::split_ws(proc::try_read_file("/proc/loadavg").value_or("0"));
  if (!loadavg.empty()) s.load_avg = std::stod(loadavg[0]);
  auto mem = proc::read_keyed("/proc/meminfo");
  auto kb = [&](const char* k) {
    auto it = mem.find(k);
    return it == mem.end() ? 0 : proc::parse_u64(proc::split_ws(it->second).at(0)) * 1024;
  };
  s.mem_free_bytes = kb("MemAvailable");
  s.mem_total_bytes = kb("MemTotal");
  return s;
}

}  // namespace ferry::node
