// Learning-rate schedules: warmup edges, the decay formulas (transformers' with a min_lr floor),
// the warmup start against transformers' formulas, steps past the end, names, and validation
// errors.
#include "anchorctx/train/schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "anchorctx/core/error.h"

namespace anchorctx::train {
namespace {

Schedule make(ScheduleKind kind, double lr, double min_lr, std::int64_t warmup,
              std::int64_t total) {
  Schedule s;
  s.kind = kind;
  s.lr = lr;
  s.min_lr = min_lr;
  s.warmup_steps = warmup;
  s.total_steps = total;
  validate(s);
  return s;
}

TEST(Schedule, WarmupRisesLinearlyToThePeak) {
  for (const ScheduleKind kind :
       {ScheduleKind::constant, ScheduleKind::linear, ScheduleKind::cosine}) {
    const Schedule s = make(kind, 1e-3, 1e-4, 4, 20);
    EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-3 * 1 / 4);  // never 0: the first step learns
    EXPECT_DOUBLE_EQ(s.lr_at(1), 1e-3 * 2 / 4);
    EXPECT_DOUBLE_EQ(s.lr_at(3), 1e-3);  // the last warmup step reaches the peak
    EXPECT_DOUBLE_EQ(s.lr_at(4), 1e-3);  // the decay starts at the peak (progress 0)
    EXPECT_LT(s.lr_at(-5), s.lr_at(1));  // before the start: treated as step 0
  }
}

TEST(Schedule, ConstantStaysAtThePeak) {
  const Schedule s = make(ScheduleKind::constant, 3e-4, 1e-5, 0, 10);
  for (const std::int64_t step : {0, 1, 9, 10, 1000})
    EXPECT_EQ(s.lr_at(step), 3e-4) << step;
}

TEST(Schedule, LinearDecaysToMinLr) {
  const Schedule s = make(ScheduleKind::linear, 1.0, 0.2, 2, 12);
  // progress = (step - 2) / 10; lr = 0.2 + 0.8 * (1 - progress)
  EXPECT_DOUBLE_EQ(s.lr_at(2), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(7), 0.2 + 0.8 * 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(11), 0.2 + 0.8 * 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(12), 0.2);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 0.2);  // past the end: the end value
  // min_lr 0 is transformers' get_linear_schedule_with_warmup after its warmup.
  const Schedule hf = make(ScheduleKind::linear, 5e-4, 0.0, 10, 110);
  for (std::int64_t step = 10; step < 110; ++step)
    EXPECT_NEAR(hf.lr_at(step), 5e-4 * std::max(0.0, (110.0 - step) / 100.0), 1e-18) << step;
}

TEST(Schedule, CosineDecaysToMinLr) {
  const Schedule s = make(ScheduleKind::cosine, 3e-4, 3e-5, 100, 1100);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 3e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(600), 3e-5 + (3e-4 - 3e-5) * 0.5);  // half way: the mean
  for (const std::int64_t step : {101, 250, 777, 1099}) {
    const double progress = (step - 100) / 1000.0;
    EXPECT_DOUBLE_EQ(s.lr_at(step),
                     3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + std::cos(std::numbers::pi * progress)))
        << step;
    EXPECT_LT(s.lr_at(step), s.lr_at(step - 1)) << step;  // strictly decreasing
  }
  EXPECT_DOUBLE_EQ(s.lr_at(1100), 3e-5);
  EXPECT_DOUBLE_EQ(s.lr_at(5000), 3e-5);
  // min_lr = lr: flat after warmup.
  const Schedule flat = make(ScheduleKind::cosine, 1e-3, 1e-3, 0, 10);
  EXPECT_DOUBLE_EQ(flat.lr_at(5), 1e-3);
}

TEST(Schedule, WarmupAsLongAsTheRun) {
  // Every step of the run is warmup; anything later is past the end.
  const Schedule s = make(ScheduleKind::cosine, 1.0, 0.1, 10, 10);
  EXPECT_DOUBLE_EQ(s.lr_at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 0.1);
  const Schedule one = make(ScheduleKind::linear, 1.0, 0.0, 0, 1);
  EXPECT_DOUBLE_EQ(one.lr_at(0), 1.0);
  EXPECT_DOUBLE_EQ(one.lr_at(1), 0.0);
}

TEST(Schedule, Names) {
  for (const ScheduleKind kind :
       {ScheduleKind::constant, ScheduleKind::linear, ScheduleKind::cosine})
    EXPECT_EQ(parse_schedule_kind(to_string(kind)), kind);
  EXPECT_EQ(to_string(ScheduleKind::cosine), "cosine");
  EXPECT_FALSE(parse_schedule_kind("Cosine").has_value());
  EXPECT_FALSE(parse_schedule_kind("").has_value());
}

TEST(Schedule, ValidateNamesTheBadField) {
  const auto error = [](auto edit) -> std::string {
    Schedule s;
    edit(s);
    try {
      validate(s);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error([](Schedule&) {}), "");
  EXPECT_NE(error([](Schedule& s) { s.lr = 0; }).find("lr"), std::string::npos);
  EXPECT_NE(error([](Schedule& s) { s.lr = std::nan(""); }).find("lr"), std::string::npos);
  EXPECT_NE(error([](Schedule& s) { s.min_lr = -1e-9; }).find("min_lr"), std::string::npos);
  EXPECT_NE(error([](Schedule& s) { s.min_lr = 2 * s.lr; }).find("min_lr"), std::string::npos);
  EXPECT_NE(error([](Schedule& s) { s.warmup_steps = -1; }).find("warmup_steps"),
            std::string::npos);
  EXPECT_NE(error([](Schedule& s) { s.total_steps = 0; }).find("total_steps"), std::string::npos);
}

// transformers' optimization.py, transcribed: get_{constant,linear,cosine}_schedule_with_warmup
// are LambdaLR(optimizer, lr_lambda) with lr = base_lr * lr_lambda(step), step 0-based:
//   warmup (all three): step / max(1, warmup)
//   constant: 1
//   linear:   max(0, (total - step) / max(1, total - warmup))
//   cosine:   max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * progress))), num_cycles = 0.5,
//             progress = (step - warmup) / max(1, total - warmup)
double transformers_lr(ScheduleKind kind, double base_lr, std::int64_t step, std::int64_t warmup,
                       std::int64_t total) {
  const auto s = static_cast<double>(step);
  if (step < warmup) return base_lr * (s / static_cast<double>(std::max<std::int64_t>(1, warmup)));
  const auto span = static_cast<double>(std::max<std::int64_t>(1, total - warmup));
  switch (kind) {
    case ScheduleKind::constant:
      return base_lr;
    case ScheduleKind::linear:
      return base_lr * std::max(0.0, (static_cast<double>(total) - s) / span);
    case ScheduleKind::cosine: {
      const double progress = (s - static_cast<double>(warmup)) / span;
      return base_lr *
             std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5 * 2.0 * progress)));
    }
  }
  return 0.0;
}

TEST(Schedule, WarmupStartZeroIsTransformersSchedule) {
  for (const ScheduleKind kind :
       {ScheduleKind::constant, ScheduleKind::linear, ScheduleKind::cosine}) {
    for (const std::int64_t warmup : {0, 1, 7}) {
      Schedule s = make(kind, 2e-5, 0.0, warmup, 53);
      s.warmup_start = WarmupStart::zero;
      // Up to total_steps: past it transformers' cosine rises again, ours stays at the end.
      for (std::int64_t step = 0; step <= 53; ++step) {
        const double want = transformers_lr(kind, 2e-5, step, warmup, 53);
        // The same formula with its operations in another order: a few ulps of lr apart.
        EXPECT_NEAR(s.lr_at(step), want, 1e-15 * 2e-5)
            << to_string(kind) << " warmup " << warmup << " step " << step;
      }
      if (warmup > 0) {
        EXPECT_EQ(s.lr_at(0), 0.0);  // transformers' first step: lr 0
      }
    }
  }
}

TEST(Schedule, WarmupStartOneStepIsZeroShiftedByOneStep) {
  for (const ScheduleKind kind : {ScheduleKind::linear, ScheduleKind::cosine}) {
    Schedule one = make(kind, 1e-3, 1e-4, 5, 40);
    Schedule zero = one;
    zero.warmup_start = WarmupStart::zero;
    for (std::int64_t step = 0; step < 4; ++step)
      EXPECT_DOUBLE_EQ(one.lr_at(step), zero.lr_at(step + 1)) << step;
    for (std::int64_t step = 5; step <= 40; ++step)  // the decay does not depend on it
      EXPECT_EQ(one.lr_at(step), zero.lr_at(step)) << step;
  }
  EXPECT_EQ(core::parse_enum<WarmupStart>("zero"), WarmupStart::zero);
  EXPECT_EQ(core::parse_enum<WarmupStart>("one-step"), WarmupStart::one_step);
  EXPECT_EQ(to_string(WarmupStart::one_step), "one_step");
}

}  // namespace
}  // namespace anchorctx::train
