// Job files (job/job_file.h): what a good file holds, and every problem refused before anything
// starts, named with its line.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "job/job_file.h"
#include "support/harness.h"
#include "util/error.h"

namespace ferry::job {
namespace {

const char* kPipeline = R"(tasks:
  - name: gen
    node: node1
    command: [python3, gen.py, "1000"]
    labels: [gpu=1, zone=b]
  - name: zip
    command: [gzip, "-1"]
  - name: sum
    command: [sha256sum]
channels:
  - from: gen:1
    to: zip:0
  - from: zip:1
    to: sum:0
    mode: message
    capacity: 512KiB
)";

std::string refusal(const std::string& text) {
  try {
    parse_job(text, "job.yaml");
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::kBadInput) << e.what();
    return e.what();
  }
  return "";
}

TEST(JobFile, APipelineReadsAsWritten) {
  JobSpec job = parse_job(kPipeline, "job.yaml");
  ASSERT_EQ(job.tasks.size(), 3u);
  EXPECT_EQ(job.tasks[0].name, "gen");
  EXPECT_EQ(job.tasks[0].node, "node1");
  EXPECT_EQ(job.tasks[0].command, (std::vector<std::string>{"python3", "gen.py", "1000"}));
  EXPECT_EQ(job.tasks[0].labels, (std::map<std::string, std::string>{{"gpu", "1"}, {"zone", "b"}}));
  EXPECT_EQ(job.tasks[0].line, 2);
  EXPECT_TRUE(job.tasks[1].node.empty());
  ASSERT_EQ(job.channels.size(), 2u);
  EXPECT_EQ(job.channels[0].from.task, "gen");
  EXPECT_EQ(job.channels[0].from.fd, 1);
  EXPECT_EQ(job.channels[0].to.task, "zip");
  EXPECT_EQ(job.channels[0].to.fd, 0);
  EXPECT_EQ(job.channels[0].mode, ChannelMode::kBytes);
  EXPECT_EQ(job.channels[0].capacity_bytes, kDefaultCapacity);
  EXPECT_EQ(job.channels[1].mode, ChannelMode::kMessage);
  EXPECT_EQ(job.channels[1].capacity_bytes, 512u << 10);
  EXPECT_EQ(job.channels[1].line, 13);
}

TEST(JobFile, EachProblemIsNamedWithItsLine) {
  struct Case {
    std::string text;
    std::string expect;
  };
  std::vector<Case> cases = {
      {"tasks: [", "job.yaml:1: not YAML"},
      {"- a\n- b\n", "job.yaml:1: a job file is a map"},
      {"channels: []\n", "job.yaml:1: the job has no tasks"},
      {"tasks: []\n", "job.yaml:1: the job has no tasks"},
      {"tasks:\n  - name: a\n    command: [true]\nowner: me\n", "job.yaml:4: unknown key 'owner'"},
      {"tasks:\n  - command: [true]\n", "job.yaml:2: a task without a name"},
      {"tasks:\n  - name: a\n    command: [true]\n    cmd: [x]\n", "job.yaml:4: unknown key 'cmd'"},
      {"tasks:\n  - name: a/b\n    command: [true]\n", "job.yaml:2: task name 'a/b' is not"},
      {"tasks:\n  - name: a\n    command: true\n", "job.yaml:3: command must be a list"},
      {"tasks:\n  - name: a\n    command: []\n", "job.yaml:3: task a has an empty command"},
      {"tasks:\n  - name: a\n", "job.yaml:2: task a has no command"},
      {"tasks:\n  - name: a\n    command: [x]\n  - name: a\n    command: [y]\n",
       "job.yaml:4: task a is named twice (first at line 2)"},
      {"tasks:\n  - name: a\n    command: [x]\n    labels: [gpu]\n",
       "job.yaml:4: label 'gpu' is not KEY=VALUE"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n    to: b:0\n",
       "job.yaml:6: to names task 'b', which the job does not have"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a\n    to: a:0\n",
       "job.yaml:5: from 'a' is not TASK:FD"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:x\n    to: a:0\n",
       "job.yaml:5: from 'a:x': the fd must be a number from 0 to 1023"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1024\n    to: a:0\n",
       "job.yaml:5: from 'a:1024': the fd must be"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n",
       "job.yaml:5: a channel needs both from and to"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n    to: a:0\n"
       "    mode: datagram\n",
       "job.yaml:7: mode 'datagram' is neither bytes nor message"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n    to: a:0\n"
       "    capacity: 2TiB\n",
       "job.yaml:7: capacity '2TiB' is not a size"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n    to: a:0\n"
       "    capacity: 100\n",
       "job.yaml:7: capacity '100' is not a size"},
      {"tasks:\n  - name: a\n    command: [x]\n  - name: b\n    command: [y]\nchannels:\n"
       "  - from: a:1\n    to: b:0\n  - from: a:1\n    to: b:3\n",
       "job.yaml:9: fd 1 of task a is already an end of the channel at line 7"},
      {"tasks:\n  - name: a\n    command: [x]\nchannels:\n  - from: a:1\n    from: a:2\n"
       "    to: a:0\n",
       "'from' is given twice"},
  };
  for (const Case& c : cases) {
    std::string got = refusal(c.text);
    EXPECT_NE(got.find(c.expect), std::string::npos)
        << "for:\n"
        << c.text << "\nexpected: " << c.expect << "\ngot: " << got;
    EXPECT_EQ(got.find('\n'), std::string::npos) << got;
  }
}

TEST(JobFile, OnlyARegularFileOnlyItsOwnerMayChange) {
  test::TempDir dir;
  std::string good = dir / "job.yaml";
  test::write_file(good, kPipeline);
  ASSERT_EQ(::chmod(good.c_str(), 0644), 0);
  EXPECT_EQ(load_job_file(good).tasks.size(), 3u);
  ASSERT_EQ(::chmod(good.c_str(), 0666), 0);
  try {
    load_job_file(good);
    ADD_FAILURE() << "a file anyone may change was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("may be changed by others"), std::string::npos)
        << e.what();
  }
  try {
    load_job_file(dir.path());
    ADD_FAILURE() << "a directory was read as a job file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  std::string big = dir / "big.yaml";
  test::write_file(big, std::string((1 << 20) + 1, '#'));
  ASSERT_EQ(::chmod(big.c_str(), 0600), 0);
  try {
    load_job_file(big);
    ADD_FAILURE() << "a file over 1 MiB was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("larger than 1 MiB"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ferry::job
