#include "util/mapping.h"

#include "util/error.h"

namespace ferry {

Mapping Mapping::anonymous(size_t len, bool huge) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail_errno(errno, "cannot allocate {} bytes", len);
  if (huge) ::madvise(p, len, MADV_HUGEPAGE);  // advice only: failure is harmless
  return Mapping(p, len);
}

}  // namespace ferry
