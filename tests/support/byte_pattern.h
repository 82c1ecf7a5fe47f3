// A stream of bytes in which no two offsets look alike, for tests and benchmarks that move bytes
// through channels and must tell a lost byte from a repeated one: word k of the stream (8 bytes,
// little-endian) is splitmix64(seed + k). Header-only so that bench/ can share it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace ferry::test {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The stream's bytes [pos, pos + len).
inline void pattern_at(uint64_t seed, uint64_t pos, char* out, size_t len) {
  uint64_t word = pos / 8;
  size_t skip = pos % 8;
  while (len > 0) {
    uint64_t w = splitmix64(seed + word++);
    size_t take = std::min(sizeof w - skip, len);
    std::memcpy(out, reinterpret_cast<const char*>(&w) + skip, take);
    out += take;
    len -= take;
    skip = 0;
  }
}

inline std::string pattern(uint64_t seed, uint64_t pos, size_t len) {
  std::string s(len, '\0');
  pattern_at(seed, pos, s.data(), len);
  return s;
}

// Where in the stream the 32 bytes at `got` are, searched within `window` bytes of `near` either
// way (nearest first): -1 when nowhere.
inline int64_t pattern_position(uint64_t seed, const char* got, uint64_t near, uint64_t window) {
  char probe[32];
  for (uint64_t d = 0; d <= window; d++)
    for (int64_t p :
         {static_cast<int64_t>(near + d), static_cast<int64_t>(near) - static_cast<int64_t>(d)}) {
      if (p < 0 || (d == 0 && p != static_cast<int64_t>(near))) continue;
      pattern_at(seed, static_cast<uint64_t>(p), probe, sizeof probe);
      if (std::memcmp(probe, got, sizeof probe) == 0) return p;
    }
  return -1;
}

// The first wrong byte (`got`, `len` bytes from it, which should be the stream's at `at`): whose
// bytes came instead (a skip over lost ones, a repeat of delivered ones, or not the stream's at
// all) and the first of them, for whoever looks into it.
inline std::string tell_wrong(uint64_t seed, const char* got, size_t len, uint64_t at,
                              uint64_t window) {
  std::string hex;
  for (size_t k = 0; k < std::min<size_t>(16, len); k++)
    hex += fmt::format("{:02x}", static_cast<unsigned char>(got[k]));
  int64_t from = len >= 32 ? pattern_position(seed, got, at, window) : -1;
  std::string whose = len < 32    ? std::string("too few bytes to tell whose")
                      : from >= 0 ? fmt::format("the stream's at {} ({:+} bytes)", from,
                                                from - static_cast<int64_t>(at))
                                  : fmt::format("not the stream's within {} MiB", window >> 20);
  return fmt::format("wrong byte at {}: {}; bytes {}", at, whose, hex);
}

}  // namespace ferry::test
