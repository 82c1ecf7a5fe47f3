// Names that come from outside (task ids, node names, a job's task names): letters, digits and a
// few punctuation characters only, so that none can be a path, an option or a control sequence.
#pragma once

#include <cctype>
#include <string_view>

namespace ferry {

// 1 to max_length characters, each a letter, a digit or one of `also`.
inline bool is_plain_name(std::string_view s, size_t max_length, std::string_view also = ".-_") {
  if (s.empty() || s.size() > max_length) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && also.find(c) == std::string_view::npos)
      return false;
  return true;
}

}  // namespace ferry
