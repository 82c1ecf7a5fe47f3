// The one error model of ferry: anything that cannot go on throws ferry::Error with a one-line,
// human-readable message. Callers that can undo work do it in destructors (RAII), so a throw
// anywhere leaves the system as it was. The command line catches Error at the top and prints
// "ferry: <message>" with a non-zero exit status.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace ferry {

class Error : public std::runtime_error {
 public:
  // What kind of failure it is, for callers that act differently on each (a migration: refused
  // leaves everything as it was, task-ended reports the task's end, the others abort).
  enum class Kind {
    kInternal,   // ferry or the system failed
    kBadInput,   // an image, a request or a file that is not what it must be
    kRefused,    // a node or a check said no before anything changed
    kTaskEnded,  // the process being worked on ended
    kPeerDown,   // another node does not answer, or its stream broke
  };
  explicit Error(const std::string& message, int exit_status = 1, Kind kind = Kind::kInternal)
      : std::runtime_error(message), exit_status_(exit_status), kind_(kind) {}
  Error(Kind kind, const std::string& message) : Error(message, 1, kind) {}
  // The command line's exit status when this error ends it (1 unless said otherwise).
  int exit_status() const { return exit_status_; }
  Kind kind() const { return kind_; }

 private:
  int exit_status_;
  Kind kind_;
};

// Like fail(), of a kind.
template <typename... Args>
[[noreturn]] void fail_as(Error::Kind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Like fail(), for a command that must end with a particular exit status.
template <typename... Args>
[[noreturn]] void fail_with(int exit_status, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...), exit_status);
}

// Like fail(), with ": <strerror(err)>" appended.
template <typename... Args>
[[noreturn]] void fail_errno(int err, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...) + ": " + std::strerror(err));
}

// Returns ret when it is not negative, otherwise throws with errno's text.
template <typename T, typename... Args>
T check_sys(T ret, fmt::format_string<Args...> format, Args&&... args) {
  if (ret < 0) fail_errno(errno, format, std::forward<Args>(args)...);
  return ret;
}

}  // namespace ferry
