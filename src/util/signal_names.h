// Signals by name or number, as a user types them: TERM, SIGTERM, term, 15, RTMIN, RTMIN+3,
// SIGRTMAX-1. Throws ferry::Error ("no signal ...") for anything else, an empty string included.
#pragma once

#include <string>

namespace ferry {

int parse_signal(const std::string& text);

}  // namespace ferry
