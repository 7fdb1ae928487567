// The per-operation step profile (`bench train --profile`): nested scopes count their time once,
// in the innermost scope, and nothing is recorded while it is off.
#include <gtest/gtest.h>

#include <time.h>

#include <chrono>
#include <thread>

#include "anchorctx/core/timing.h"
#include "anchorctx/model/op_profile.h"

namespace anchorctx::model {
namespace {

std::size_t at(Op op) {
  return static_cast<std::size_t>(op);
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

// Busy work until this thread has used `ms` of CPU (however long that takes on a loaded
// machine): CPU time, unlike a sleep.
double spin(double ms) {
  const double start = thread_cpu_ms();
  double x = 0.0;
  while (thread_cpu_ms() - start < ms)
    x += 1e-9;
  return x;
}

TEST(OpProfile, NestedScopesAddUpToTheWallTimeWithoutCountingTwice) {
  set_op_profile(true);
  const core::Stopwatch total;
  {
    const OpScope outer(Op::lm_head_loss);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
      const OpScope inner(Op::gemm);
      EXPECT_GT(spin(15.0), 0.0);
      const OpScope innermost(Op::gemm_bf16_convert);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  const double wall = total.elapsed_ms();
  set_op_profile(false);
  const OpTimes t = op_profile();
  EXPECT_GE(t.wall_ms[at(Op::lm_head_loss)], 20.0);
  EXPECT_GE(t.wall_ms[at(Op::gemm)], 15.0);
  EXPECT_GE(t.wall_ms[at(Op::gemm_bf16_convert)], 5.0);
  double sum = 0.0;
  for (const double ms : t.wall_ms)
    sum += ms;
  EXPECT_LE(sum, wall + 0.5);  // each stretch counted once
  EXPECT_GE(sum, wall - 2.0);
  // The spin is CPU time of the gemm scope; the sleeps are (almost) none.
  EXPECT_GT(t.cpu_ms[at(Op::gemm)], 5.0);
  EXPECT_LT(t.cpu_ms[at(Op::lm_head_loss)], t.wall_ms[at(Op::lm_head_loss)]);

  // Off: scopes record nothing; on again: the totals start from zero.
  { const OpScope ignored(Op::rmsnorm); }
  EXPECT_EQ(op_profile().wall_ms, t.wall_ms);
  set_op_profile(true);
  set_op_profile(false);
  for (const double ms : op_profile().wall_ms)
    EXPECT_EQ(ms, 0.0);
}

TEST(OpProfile, EveryOpHasAName) {
  for (std::size_t i = 0; i < kOpCount; ++i)
    EXPECT_NE(core::enum_name(static_cast<Op>(i)), "?") << i;
}

}  // namespace
}  // namespace anchorctx::model
