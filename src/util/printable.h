// Text that came from outside (an image, a task id, a path) made safe to print on a terminal:
// control characters, DEL, C1 controls and bytes that are not UTF-8 become C-style escapes
// (\n, \t, \x1b, ...), and a backslash becomes \\, so that nothing read can move the cursor,
// recolour the screen or forge a line of output.
#pragma once

#include <string>
#include <string_view>

namespace ferry {

std::string printable(std::string_view s);

}  // namespace ferry
