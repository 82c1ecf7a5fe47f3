// Small, strict readers for procfs and other kernel text files. All throw ferry::Error.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/fd.h"

namespace ferry::proc {

std::string path(pid_t pid, std::string_view rel);  // "/proc/<pid>/<rel>"
std::string read_file(const std::string& path);
std::optional<std::string> try_read_file(const std::string& path);
std::string read_link(const std::string& path);
std::optional<std::string> try_read_link(const std::string& path);
std::vector<std::string> list_dir(const std::string& path);  // names without . and ..
bool exists(pid_t pid);
// A waitpid() status as ferry reports it: the exit status, or 128+N for a death by signal N.
int exit_code_of(int wait_status);
// The pid (as we see it) of the process that is `inner_pid` in the PID namespace of process
// `member`; -1 when there is none. (A task of a cluster node, seen from the host.)
pid_t pid_in_namespace_of(pid_t member, pid_t inner_pid);
// The resident memory of pid (VmRSS), 0 when it is gone.
uint64_t rss_bytes(pid_t pid);
// Reads len bytes at addr from process pid's memory, through mem_fd (its /proc/PID/mem, opened
// on first use). Throws when any of them cannot be read.
void read_process_memory(UniqueFd& mem_fd, int open_flags, pid_t pid, uint64_t addr, void* data,
                         size_t len);

// "Key:\tvalue" lines of /proc/<pid>/status (or fdinfo): key -> value with surrounding blanks cut.
std::map<std::string, std::string> read_keyed(const std::string& path);

// The fields of /proc/<pid>/stat after the "(comm)" part, 1-based like proc(5): field(3) is state.
class Stat {
 public:
  explicit Stat(pid_t pid);
  std::string comm() const { return comm_; }
  char state() const { return fields_.at(0)[0]; }
  uint64_t field(int n) const;  // proc(5) numbering, n >= 3
 private:
  std::string comm_;
  std::vector<std::string> fields_;  // fields_[0] is field 3
};

// Text helpers used by the parsers.
std::vector<std::string> split(std::string_view s, char sep);
std::vector<std::string> split_ws(std::string_view s);
std::string_view trim(std::string_view s);
uint64_t parse_u64(std::string_view s, int base = 10);
int64_t parse_i64(std::string_view s);
// The whole of s as a finite number ("0.5", "12"); nullopt when it is not one.
std::optional<double> parse_number(const std::string& s);

}  // namespace ferry::proc
