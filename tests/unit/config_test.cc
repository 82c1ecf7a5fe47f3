// A node's configuration file: what render_config writes, load_config reads back the same; what
// is missing or malformed is named, never half-read (issue 10: only cluster tests reached it).
#include <gtest/gtest.h>

#include "node/config.h"
#include "support/harness.h"
#include "util/error.h"

namespace ferry::node {
namespace {

NodeConfig sample() {
  NodeConfig c;
  c.name = "node1";
  c.listen = "10.213.0.1:7700";
  c.data_listen = "10.213.0.1:7701";
  c.state_dir = "/var/lib/ferry/node1";
  c.control_socket = "/run/ferry/node1.sock";
  c.page_store = "/shared/pagestore";
  c.labels = {{"gpu", "1"}, {"zone", "b"}};
  c.ca_cert = "ca.pem";
  c.cert = "node1.pem";
  c.key = "node1.key";
  c.peers = {{"node2", "10.213.0.2:7700"}};
  c.max_tasks = 7;
  c.max_load_per_cpu = 2.5;
  c.reserve_memory_bytes = 100ull << 20;
  c.lazy_timeout_ms = 30000;
  return c;
}

std::string error_loading(const test::TempDir& dir, const std::string& text) {
  std::string path = dir.path() + "/node.toml";
  test::write_file(path, text);
  try {
    load_config(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ConfigTest, WhatIsRenderedReadsBackTheSame) {
  test::TempDir dir;
  NodeConfig c = sample();
  std::string path = dir.path() + "/node.toml";
  test::write_file(path, render_config(c));
  NodeConfig back = load_config(path);
  EXPECT_EQ(back.name, c.name);
  EXPECT_EQ(back.listen, c.listen);
  EXPECT_EQ(back.data_listen, c.data_listen);
  EXPECT_EQ(back.state_dir, c.state_dir);
  EXPECT_EQ(back.control_socket, c.control_socket);
  EXPECT_EQ(back.page_store, c.page_store);
  EXPECT_EQ(back.labels, c.labels);
  EXPECT_EQ(back.ca_cert, c.ca_cert);
  EXPECT_EQ(back.cert, c.cert);
  EXPECT_EQ(back.key, c.key);
  ASSERT_EQ(back.peers.size(), 1u);
  EXPECT_EQ(back.peers[0].name, "node2");
  EXPECT_EQ(back.peers[0].address, "10.213.0.2:7700");
  EXPECT_EQ(back.max_tasks, 7u);
  EXPECT_EQ(back.max_load_per_cpu, 2.5);
  EXPECT_EQ(back.reserve_memory_bytes, 100ull << 20);
  EXPECT_EQ(back.lazy_timeout_ms, 30000u);
}

TEST(ConfigTest, DefaultsFillWhatIsLeftOut) {
  test::TempDir dir;
  std::string path = dir.path() + "/node.toml";
  test::write_file(path,
                   "name = \"n\"\nlisten = \"1.2.3.4:7700\"\nstate_dir = \"/s\"\n"
                   "control_socket = \"/c.sock\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n");
  NodeConfig c = load_config(path);
  EXPECT_EQ(c.data_listen, "1.2.3.4:7701");  // the next port
  EXPECT_EQ(c.page_store, "/s/pagestore");
  EXPECT_EQ(c.max_tasks, 64u);
  EXPECT_EQ(c.reserve_memory_bytes, 256ull << 20);
  EXPECT_EQ(c.lazy_timeout_ms, 120000u);
  EXPECT_TRUE(c.peers.empty());
}

TEST(ConfigTest, EveryProblemIsNamed) {
  test::TempDir dir;
  const std::string base = "name = \"n\"\nstate_dir = \"/s\"\ncontrol_socket = \"/c.sock\"\n";
  const std::string tls = "[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n";
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {base + tls, "'listen' is missing"},
      {base + "listen = \"nohost\"\n" + tls, "listen 'nohost' is not host:port"},
      {base + "listen = \"h:port\"\n" + tls, "listen 'h:port' is not host:port"},
      {base + "listen = \"h:70000\"\n" + tls, "is not host:port"},
      {base + "listen = \"h:1\"\n", "[tls] section is missing"},
      {base + "listen = \"h:1\"\npage_store = \"relative\"\n" + tls, "absolute path"},
      {base + "listen = \"h:1\"\n" + tls + "[[peers]]\nname = \"n\"\naddress = \"h:2\"\n",
       "lists itself as a peer"},
      {base + "listen = \"h:1\"\n" + tls + "[[peers]]\nname = \"m\"\n", "'address' is missing"},
      {"name = = \"x\"\n", "line 1"},
  };
  for (auto& c : cases)
    EXPECT_NE(error_loading(dir, c.text).find(c.expect), std::string::npos)
        << c.text << "\ngot: " << error_loading(dir, c.text);
}

TEST(ConfigTest, SettingsFromTheCommandLineAreChecked) {
  NodeConfig c = sample();
  apply_setting(c, "max_tasks", "3");
  apply_setting(c, "reserve_memory_mb", "1");
  apply_setting(c, "lazy_timeout_s", "2.5");
  EXPECT_EQ(c.max_tasks, 3u);
  EXPECT_EQ(c.reserve_memory_bytes, 1ull << 20);
  EXPECT_EQ(c.lazy_timeout_ms, 2500u);
  for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"max_tasks", "-1"}, {"max_tasks", "3x"}, {"lazy_timeout_s", "0"}, {"nope", "1"}}) {
    try {
      apply_setting(c, key, value);
      ADD_FAILURE() << key << "=" << value << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace ferry::node
