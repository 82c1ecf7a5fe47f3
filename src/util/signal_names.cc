#include "util/signal_names.h"

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cctype>

#include "util/error.h"

namespace ferry {
namespace {

// A small non-negative decimal number (no sign, no spaces), or -1.
int small_number(const std::string& s) {
  if (s.empty() || s.size() > 3 ||
      !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    return -1;
  return std::stoi(s);
}

}  // namespace

int parse_signal(const std::string& text) {
  if (text.empty()) fail("no signal '' (give a name such as TERM, or a number from 1 to 64)");
  if (int n = small_number(text); n >= 0) {
    if (n < 1 || n > 64) fail("no signal {} (numbers go from 1 to 64)", text);
    return n;
  }
  if (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-')
    fail("no signal {} (numbers go from 1 to 64)", text);
  std::string name = text;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  // Real-time signals, counted from either end as the kernel numbers them for glibc programs.
  for (const char* base : {"RTMIN", "RTMAX"}) {
    if (name.rfind(base, 0) != 0) continue;
    bool from_min = base[2] == 'M' && base[3] == 'I';
    std::string rest = name.substr(5);
    int offset = 0;
    if (!rest.empty()) {
      if (rest[0] != (from_min ? '+' : '-') || (offset = small_number(rest.substr(1))) < 0)
        fail("no signal {} (say {}{}N)", text, base, from_min ? '+' : '-');
    }
    int sig = from_min ? SIGRTMIN + offset : SIGRTMAX - offset;
    if (sig < SIGRTMIN || sig > SIGRTMAX) fail("no signal {} (out of the real-time range)", text);
    return sig;
  }
  for (int sig = 1; sig < 32; sig++)
    if (const char* abbrev = sigabbrev_np(sig); abbrev && name == abbrev) return sig;
  fail("no signal named {}", text);
}

}  // namespace ferry
