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
  explicit Error(const std::string& message, int exit_status = 1)
      : std::runtime_error(message), exit_status_(exit_status) {}
  // The command line's exit status when this error ends it (1 unless said otherwise).
  int exit_status() const { return exit_status_; }

 private:
  int exit_status_;
};

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
