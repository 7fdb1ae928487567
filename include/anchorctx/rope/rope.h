// RoPE as HuggingFace transformers computes it: the frequency table of every scaling type of
// transformers' rope utilities, and the rotate-half rotation (pairs (i, i + D/2) turned by
// position * inv_freq[i]) forward and backward, in each precision mode.
//
// Precision modes (DESIGN.md, core contracts; docs/ROPE.md says where each rounds):
//   fp32     cos/sin and the rotation in float32.
//   hf_bf16  what a transformers model in torch.bfloat16 does: cos/sin computed in float32
//            (times attention_scaling), then rounded to bf16; q_embed = bf16(bf16(x * cos) +
//            bf16(rotate_half(x) * sin)), every product and the sum rounded to bf16.
//   exact    float32 cos/sin and rotation on (bf16-valued) inputs; the caller keeps the rotated
//            q/k in float32 into the attention kernel instead of rounding them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "anchorctx/core/enum_names.h"
#include "anchorctx/rope/scaling.h"

namespace anchorctx::rope {

enum class RopeMode { fp32, hf_bf16, exact };
inline constexpr core::EnumName<RopeMode> kRopeModeNames[] = {
    {RopeMode::fp32, "fp32"}, {RopeMode::hf_bf16, "hf_bf16"}, {RopeMode::exact, "exact"}};
constexpr std::span<const core::EnumName<RopeMode>> enum_names(RopeMode) {
  return kRopeModeNames;
}
std::string_view to_string(RopeMode mode);
std::optional<RopeMode> parse_rope_mode(std::string_view name);

// What the frequency table depends on (from a model's config).
struct RopeSpec {
  std::int64_t head_dim = 0;  // even
  double theta = 10000.0;
  RopeScaling scaling;
  std::int64_t max_position_embeddings = 2048;
};

// transformers' inv_freq [head_dim / 2] (float32) and attention_scaling (cos and sin are
// multiplied by it; 1 except for yarn). `seq_len` is the current sequence length, which only the
// `dynamic` type uses (NTK scaling grows the base once seq_len > max_position_embeddings, as
// transformers' dynamic_rope_update does); 0 means max_position_embeddings.
struct RopeFrequencies {
  std::vector<float> inv_freq;
  float attention_scaling = 1.0f;
};
// Throws anchorctx::Error for an odd or non-positive head_dim or a scaling missing what its
// type needs.
RopeFrequencies compute_frequencies(const RopeSpec& spec, std::int64_t seq_len = 0);

// cos/sin for a batch's positions, built once per step and shared by every layer:
// cos/sin [T, D/2] (the two halves of transformers' cat(freqs, freqs) are equal, so half is
// kept), already rounded to bf16 in hf_bf16 mode. angle = float32(position) * inv_freq[i] in
// float32, as transformers' `inv_freq @ position_ids` does.
class RotationTable {
 public:
  RotationTable() = default;
  // Throws anchorctx::Error on a negative position.
  RotationTable(const RopeFrequencies& frequencies, std::span<const std::int32_t> positions,
                RopeMode mode);

  std::int64_t tokens() const { return tokens_; }
  std::int64_t half_dim() const { return half_; }
  RopeMode mode() const { return mode_; }
  std::span<const float> cos() const { return cos_; }
  std::span<const float> sin() const { return sin_; }

  // x [T, heads, D] (row-major, D = 2 * half_dim()) rotated in place. In hf_bf16 mode the
  // inputs are expected to be bf16 values and the outputs are (rounded as documented above).
  void forward(float* x, std::int64_t heads) const;
  // dx [T, heads, D] in place: the gradient of forward's input from its output's gradient, the
  // transposed rotation (a, b) -> (a cos + b sin, b cos - a sin) of each pair (i, i + D/2). In
  // fp32 and exact in float32. In hf_bf16 what torch's autograd computes through forward's bf16
  // ops: the roundings pass the gradient straight through, and each product (dy * cos,
  // dy * sin) and each sum is itself rounded to bf16, e.g. bf16(bf16(a cos) + bf16(b sin));
  // inputs are expected to be bf16 values, outputs are bf16 values.
  void backward(float* dx, std::int64_t heads) const;

 private:
  RopeMode mode_ = RopeMode::fp32;
  std::int64_t tokens_ = 0, half_ = 0;
  std::vector<float> cos_, sin_;
};

}  // namespace anchorctx::rope
