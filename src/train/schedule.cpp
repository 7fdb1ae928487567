// Learning-rate schedules (see schedule.h).
//
// transformers' get_{constant,linear,cosine}_schedule_with_warmup, with two differences the
// header states: warmup gives lr * (step + 1) / warmup_steps by default (WarmupStart::zero
// gives transformers' lr * step / warmup_steps, first step at lr 0), and the decay ends at
// min_lr instead of 0:
//   linear  lr_at = min_lr + (lr - min_lr) * (1 - progress)
//   cosine  lr_at = min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * progress))
//   progress = (step - warmup_steps) / (total_steps - warmup_steps), 1 from total_steps on.
#include "anchorctx/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "anchorctx/core/error.h"

namespace anchorctx::train {

std::string_view to_string(ScheduleKind kind) {
  return core::enum_name(kind);
}

std::optional<ScheduleKind> parse_schedule_kind(std::string_view name) {
  return core::parse_enum<ScheduleKind>(name);
}

void validate(const Schedule& schedule) {
  require(std::isfinite(schedule.lr) && schedule.lr > 0.0,
          "schedule: lr = {} must be a positive number", schedule.lr);
  require(schedule.min_lr >= 0.0 && schedule.min_lr <= schedule.lr,
          "schedule: min_lr = {} must lie in [0, lr = {}]", schedule.min_lr, schedule.lr);
  require(schedule.warmup_steps >= 0, "schedule: warmup_steps = {} is negative",
          schedule.warmup_steps);
  require(schedule.total_steps >= 1, "schedule: total_steps = {} must be at least 1",
          schedule.total_steps);
}

double Schedule::lr_at(std::int64_t step) const {
  step = std::max<std::int64_t>(step, 0);
  if (step < warmup_steps) {
    const std::int64_t done = warmup_start == WarmupStart::zero ? step : step + 1;
    return lr * static_cast<double>(done) / static_cast<double>(warmup_steps);
  }
  if (kind == ScheduleKind::constant) return lr;
  // Here warmup_steps <= step; below total_steps, total_steps - warmup_steps >= 1.
  const double progress = step >= total_steps ? 1.0
                                              : static_cast<double>(step - warmup_steps) /
                                                    static_cast<double>(total_steps - warmup_steps);
  const double factor = kind == ScheduleKind::linear
                            ? 1.0 - progress
                            : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return min_lr + (lr - min_lr) * factor;
}

}  // namespace anchorctx::train
