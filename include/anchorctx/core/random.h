// Small, fully specified random-number pieces shared by the data generators, the packer's
// shuffle and sampling: a seed gives the same numbers on every platform and standard library
// (std::uniform_int_distribution and friends are implementation-defined).
#pragma once

#include <cstdint>

namespace anchorctx::core {

// splitmix64 (Steele, Lea and Flood; Vigna's constants): advances `state` by the golden-ratio
// increment and returns it well mixed. Any state, 0 included, is fine.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// 64 random bits to a uniform value in [0, n), n > 0: the high half of bits * n (Lemire's
// multiply-shift, without the rejection step; the bias is below n / 2^64).
inline std::uint64_t bits_below(std::uint64_t bits, std::uint64_t n) {
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
}

}  // namespace anchorctx::core
