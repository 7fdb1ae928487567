// Timing helpers for benchmarks: a steady-clock stopwatch and the median of repeated runs
// (the median, not the mean, so that one run disturbed by the OS does not move the result).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

namespace anchorctx::core {

class Stopwatch {
 public:
  using Clock = std::chrono::steady_clock;

  Stopwatch() : start_(Clock::now()) {}
  void restart() { start_ = Clock::now(); }
  double elapsed_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  double elapsed_ms() const { return elapsed_s() * 1e3; }

 private:
  Clock::time_point start_;
};

// The median of `values` (the mean of the two middle ones for an even count); NaN when empty.
inline double median(std::vector<double> values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  const std::size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid), values.end());
  const double upper = values[mid];
  if (values.size() % 2 == 1) return upper;
  const double lower =
      *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lower + upper);
}

// The default warm-up of the benchmarks (warm_up below).
inline constexpr double kWarmUpMs = 300.0;

// Runs `fn` until at least `min_ms` have passed, and at least once: the untimed warm-up of a
// benchmark. One run was not enough for short kernels: on a 2-vCPU Zen 4 VM the first 100-150
// ms of two-thread work after single-threaded setup ran up to 1.5x slower (the attention
// forward at 4K: 33-40 ms per run, then 24-26 ms), so a median of 5 runs caught the slow ones.
template <typename Fn>
void warm_up(double min_ms, Fn&& fn) {
  const Stopwatch watch;
  do {
    fn();
  } while (watch.elapsed_ms() < min_ms);
}

// Runs `fn` `repeat` times and returns the wall time of each run in milliseconds.
template <typename Fn>
std::vector<double> time_runs_ms(int repeat, Fn&& fn) {
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(std::max(repeat, 0)));
  for (int i = 0; i < repeat; ++i) {
    Stopwatch watch;
    fn();
    ms.push_back(watch.elapsed_ms());
  }
  return ms;
}

}  // namespace anchorctx::core
