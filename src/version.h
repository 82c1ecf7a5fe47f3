// ferry's version, recorded in every image.
#pragma once

namespace ferry {
inline constexpr const char* kFerryVersion = "0.1.0";
}
