#include "node/config.h"

#include <toml++/toml.h>

#include <sstream>

#include "util/error.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

std::string need_string(const toml::table& t, const char* key, const std::string& file) {
  auto v = t[key].value<std::string>();
  if (!v || v->empty()) fail("{}: '{}' is missing", file, key);
  return *v;
}

// host:port with a port from 1 to 65535.
void check_address(const std::string& a, const char* what, const std::string& file) {
  auto colon = a.rfind(':');
  bool ok = colon != std::string::npos && colon > 0 && colon + 1 < a.size() &&
            a.size() - colon - 1 <= 5 &&
            a.find_first_not_of("0123456789", colon + 1) == std::string::npos;
  if (ok) {
    int port = std::stoi(a.substr(colon + 1));
    ok = port >= 1 && port <= 65535;
  }
  if (!ok) fail("{}: {} '{}' is not host:port", file, what, a);
}

}  // namespace

NodeConfig load_config(const std::string& path) {
  toml::table t;
  try {
    t = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    fail("{}: {} (line {})", path, std::string(e.description()), e.source().begin.line);
  }
  NodeConfig c;
  c.name = need_string(t, "name", path);
  c.listen = need_string(t, "listen", path);
  check_address(c.listen, "listen", path);
  c.data_listen = t["data_listen"].value_or(std::string());
  if (c.data_listen.empty()) {
    auto colon = c.listen.rfind(':');
    c.data_listen =
        c.listen.substr(0, colon) + ":" + std::to_string(std::stoi(c.listen.substr(colon + 1)) + 1);
  }
  check_address(c.data_listen, "data_listen", path);
  c.state_dir = need_string(t, "state_dir", path);
  c.control_socket = need_string(t, "control_socket", path);
  c.page_store = t["page_store"].value_or(c.state_dir + "/pagestore");
  if (c.page_store.empty() || c.page_store[0] != '/')
    fail("{}: page_store must be an absolute path", path);
  if (auto labels = t["labels"].as_table())
    for (auto& [k, v] : *labels) c.labels[std::string(k.str())] = v.value_or(std::string());
  c.max_tasks = t["max_tasks"].value_or(64u);
  c.max_load_per_cpu = t["max_load_per_cpu"].value_or(0.0);
  c.reserve_memory_bytes = static_cast<uint64_t>(t["reserve_memory_mb"].value_or(256)) << 20;
  c.report_interval_ms = t["report_interval_ms"].value_or(1000u);
  c.down_after_ms = t["down_after_ms"].value_or(3000u);
  c.lazy_timeout_ms = static_cast<uint32_t>(t["lazy_timeout_s"].value_or(120.0) * 1000);
  auto tls = t["tls"].as_table();
  if (!tls) fail("{}: the [tls] section is missing (ca, cert, key)", path);
  c.ca_cert = need_string(*tls, "ca", path);
  c.cert = need_string(*tls, "cert", path);
  c.key = need_string(*tls, "key", path);
  if (auto peers = t["peers"].as_array())
    for (auto& p : *peers) {
      auto* pt = p.as_table();
      if (!pt) fail("{}: each [[peers]] entry needs name and address", path);
      PeerConfig pc{need_string(*pt, "name", path), need_string(*pt, "address", path)};
      check_address(pc.address, "peer address", path);
      if (pc.name == c.name) fail("{}: node {} lists itself as a peer", path, c.name);
      c.peers.push_back(pc);
    }
  return c;
}

void apply_setting(NodeConfig& c, const std::string& key, const std::string& value) {
  auto number = [&](double lo, double hi) {
    std::optional<double> v = proc::parse_number(value);
    if (!v || !(*v >= lo && *v <= hi))
      fail("--node-config: {} wants a number from {} to {}, got '{}'", key, lo, hi, value);
    return *v;
  };
  if (key == "max_tasks")
    c.max_tasks = static_cast<uint32_t>(number(0, 1e6));
  else if (key == "max_load_per_cpu")
    c.max_load_per_cpu = number(0, 1e6);
  else if (key == "reserve_memory_mb")
    c.reserve_memory_bytes = static_cast<uint64_t>(number(0, 1e9)) << 20;
  else if (key == "lazy_timeout_s")
    c.lazy_timeout_ms = static_cast<uint32_t>(number(1, 86400) * 1000);
  else if (key == "report_interval_ms")
    c.report_interval_ms = static_cast<uint32_t>(number(100, 600000));
  else if (key == "down_after_ms")
    c.down_after_ms = static_cast<uint32_t>(number(100, 3600000));
  else
    fail(
        "--node-config: unknown setting '{}' (max_tasks, max_load_per_cpu, reserve_memory_mb, "
        "lazy_timeout_s, report_interval_ms, down_after_ms)",
        key);
}

std::string render_config(const NodeConfig& c) {
  toml::table t;
  t.insert("name", c.name);
  t.insert("listen", c.listen);
  t.insert("data_listen", c.data_listen);
  t.insert("state_dir", c.state_dir);
  t.insert("control_socket", c.control_socket);
  t.insert("page_store", c.page_store);
  toml::table labels;
  for (auto& [k, v] : c.labels) labels.insert(k, v);
  t.insert("labels", labels);
  t.insert("max_tasks", static_cast<int64_t>(c.max_tasks));
  t.insert("max_load_per_cpu", c.max_load_per_cpu);
  t.insert("reserve_memory_mb", static_cast<int64_t>(c.reserve_memory_bytes >> 20));
  t.insert("lazy_timeout_s", c.lazy_timeout_ms / 1000.0);
  t.insert("report_interval_ms", static_cast<int64_t>(c.report_interval_ms));
  t.insert("down_after_ms", static_cast<int64_t>(c.down_after_ms));
  toml::table tls;
  tls.insert("ca", c.ca_cert);
  tls.insert("cert", c.cert);
  tls.insert("key", c.key);
  t.insert("tls", tls);
  toml::array peers;
  for (auto& p : c.peers) peers.push_back(toml::table{{"name", p.name}, {"address", p.address}});
  t.insert("peers", peers);
  std::ostringstream out;
  out << t << "\n";
  return out.str();
}

}  // namespace ferry::node
