// Learning-rate schedules: linear warmup from 0, then constant, linear decay or cosine decay to
// min_lr at total_steps (as transformers' get_{constant,linear,cosine}_schedule_with_warmup,
// with an optional floor).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::train {

enum class ScheduleKind { constant, linear, cosine };
inline constexpr core::EnumName<ScheduleKind> kScheduleKindNames[] = {
    {ScheduleKind::constant, "constant"},
    {ScheduleKind::linear, "linear"},
    {ScheduleKind::cosine, "cosine"}};
constexpr std::span<const core::EnumName<ScheduleKind>> enum_names(ScheduleKind) {
  return kScheduleKindNames;
}
std::string_view to_string(ScheduleKind kind);
std::optional<ScheduleKind> parse_schedule_kind(std::string_view name);

struct Schedule {
  ScheduleKind kind = ScheduleKind::cosine;
  double lr = 3e-4;     // peak learning rate
  double min_lr = 0.0;  // floor reached at total_steps (linear, cosine)
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;

  // Learning rate for optimizer step `step` (0-based): warmup lr * (step + 1) / warmup_steps
  // for step < warmup_steps, then the decay; steps past total_steps stay at the end value.
  double lr_at(std::int64_t step) const;
};

// Throws anchorctx::Error on lr <= 0, min_lr outside [0, lr], negative warmup or
// total_steps < 1.
void validate(const Schedule& schedule);

}  // namespace anchorctx::train
