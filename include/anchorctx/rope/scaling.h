// RoPE scaling: the `rope_scaling` of a HuggingFace config.json, as transformers' rope utilities
// read it. Part `rope` owns it (model's config names it) so that the frequency code needs no model.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::rope {

// The RoPE scaling types of transformers' rope utilities (`rope_scaling.rope_type`, or the legacy
// `rope_scaling.type`). `none` is transformers' "default" (no scaling; rope_scaling null).
enum class RopeScalingType { none, linear, dynamic, llama3, yarn };
inline constexpr core::EnumName<RopeScalingType> kRopeScalingTypeNames[] = {
    {RopeScalingType::none, "default"},  {RopeScalingType::none, "none", true},
    {RopeScalingType::linear, "linear"}, {RopeScalingType::dynamic, "dynamic"},
    {RopeScalingType::llama3, "llama3"}, {RopeScalingType::yarn, "yarn"}};
constexpr std::span<const core::EnumName<RopeScalingType>> enum_names(RopeScalingType) {
  return kRopeScalingTypeNames;
}

std::string_view to_string(RopeScalingType type);  // "default", "linear", ...
// Accepts "default" (and "none") and the four scaling names; nullopt otherwise.
std::optional<RopeScalingType> parse_rope_scaling_type(std::string_view name);

// `rope_scaling` of config.json. Which fields matter depends on the type (as in transformers):
//   linear:  factor
//   dynamic: factor (scaled against max_position_embeddings, as transformers does; an
//            original_max_position_embeddings here is kept for the round trip, never used)
//   llama3:  factor, low_freq_factor, high_freq_factor, original_max_position_embeddings
//   yarn:    factor, original_max_position_embeddings (else max_position_embeddings),
//            beta_fast, beta_slow, attention_factor (else computed from factor / mscale),
//            mscale, mscale_all_dim, truncate
// Optional fields stay unset when the JSON lacks them, so that a round trip writes back exactly
// what was read and the rope code can apply transformers' own fallbacks.
struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;
  std::optional<std::int64_t> original_max_position_embeddings;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  std::optional<double> attention_factor;
  std::optional<double> mscale;
  std::optional<double> mscale_all_dim;
  std::optional<bool> truncate;

  bool enabled() const { return type != RopeScalingType::none; }
  friend bool operator==(const RopeScaling&, const RopeScaling&) = default;
};

}  // namespace anchorctx::rope
