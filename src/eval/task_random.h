// The random numbers the synthetic task generators draw from (ruler.cpp, synthetic_tasks.cpp): a
// seed mixed with the task, length and depth, so every prompt has its own stream, and a small
// splitmix64 generator (the same numbers on every platform, unlike std:: distributions).
// Each draw is a statement of its own (or initialises a named local): C++ leaves the order of
// two draws in one expression (function arguments, the operands of +) to the compiler, which
// would make the prompts depend on the build (tests Niah.PromptsOfASeedArePinned,
// SyntheticTasks.PromptsOfASeedArePinned).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "anchorctx/core/random.h"

namespace anchorctx::eval {

inline std::uint64_t mix_seed(std::uint64_t seed, const std::string& task, std::int64_t length,
                              double depth) {
  std::uint64_t h = seed ^ 0x243F6A8885A308D3ull;
  for (const char c : task)
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  h ^= static_cast<std::uint64_t>(length) * 0x9E3779B97F4A7C15ull;
  h ^= static_cast<std::uint64_t>(std::llround(depth * 1e6)) << 20;
  core::splitmix64(h);
  return h;
}

struct TaskRng {
  std::uint64_t state;
  std::uint64_t next() { return core::splitmix64(state); }
  std::uint64_t below(std::uint64_t n) { return core::bits_below(next(), n); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Fisher-Yates, from the back.
  template <class T>
  void shuffle(T& v) {
    for (std::size_t i = v.size(); i > 1; --i)
      std::swap(v[i - 1], v[below(i)]);
  }
};

}  // namespace anchorctx::eval
