// Times of a struct stat as the images and checks record them: nanoseconds since the epoch.
#pragma once

#include <sys/stat.h>

#include <cstdint>

namespace ferry {

inline int64_t mtime_ns(const struct stat& st) {
  return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}

inline int64_t atime_ns(const struct stat& st) {
  return st.st_atim.tv_sec * 1000000000ll + st.st_atim.tv_nsec;
}

}  // namespace ferry
