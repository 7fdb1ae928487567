#include "anchorctx/core/timing.h"

#include <cmath>
#include <thread>

#include <gtest/gtest.h>

namespace anchorctx::core {
namespace {

TEST(Timing, MedianOfOddEvenAndEmpty) {
  EXPECT_DOUBLE_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_DOUBLE_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
  EXPECT_DOUBLE_EQ(median({5.0}), 5.0);
  EXPECT_TRUE(std::isnan(median({})));
}

TEST(Timing, StopwatchAndRunsMeasureWallTime) {
  Stopwatch watch;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(watch.elapsed_ms(), 19.0);
  int calls = 0;
  const auto ms = time_runs_ms(3, [&] { ++calls; });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(ms.size(), 3u);
  for (const double m : ms)
    EXPECT_GE(m, 0.0);
}

}  // namespace
}  // namespace anchorctx::core
