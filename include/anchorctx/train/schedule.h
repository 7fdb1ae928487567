// Learning-rate schedules: linear warmup, then constant, linear decay or cosine decay to min_lr
// at total_steps (as transformers' get_{constant,linear,cosine}_schedule_with_warmup, with an
// optional floor and a choice of where the warmup starts).
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

// Where the linear warmup starts (step is the 0-based optimizer step, w = warmup_steps):
//   one_step  lr * (step + 1) / w: the first step already moves the weights, the last warmup
//             step reaches lr (the default; anchorctx's behaviour from the start);
//   zero      lr * step / w: transformers' get_*_schedule_with_warmup, whose first step runs
//             at lr 0 (its gradients only fill AdamW's moments); for step-by-step parity.
enum class WarmupStart { one_step, zero };
inline constexpr core::EnumName<WarmupStart> kWarmupStartNames[] = {
    {WarmupStart::one_step, "one_step"},
    {WarmupStart::one_step, "one-step", true},
    {WarmupStart::zero, "zero"}};
constexpr std::span<const core::EnumName<WarmupStart>> enum_names(WarmupStart) {
  return kWarmupStartNames;
}
constexpr std::string_view to_string(WarmupStart start) {
  return core::enum_name(start);
}

struct Schedule {
  ScheduleKind kind = ScheduleKind::cosine;
  double lr = 3e-4;     // peak learning rate
  double min_lr = 0.0;  // floor reached at total_steps (linear, cosine)
  std::int64_t warmup_steps = 0;
  WarmupStart warmup_start = WarmupStart::one_step;
  std::int64_t total_steps = 1;

  // Learning rate for optimizer step `step` (0-based): the warmup (see WarmupStart) for
  // step < warmup_steps, then the decay; steps past total_steps stay at the end value.
  double lr_at(std::int64_t step) const;
};

// Throws anchorctx::Error on lr <= 0, min_lr outside [0, lr], negative warmup or
// total_steps < 1.
void validate(const Schedule& schedule);

}  // namespace anchorctx::train
