// AdamW with float32 state over flat parameter buffers (model/parameters.h), as
// torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments), plus global
// gradient-norm clipping as torch.nn.utils.clip_grad_norm_.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/model/parameters.h"

namespace anchorctx::train {

struct AdamWOptions {
  double beta1 = 0.9;  // the paper's betas 0.9 / 0.95 and weight decay 0.1
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  // Zeroed moments for `layout.total()` elements. Weight decay applies to the slices whose
  // ParameterInfo::decay is set. Throws anchorctx::Error on betas outside [0, 1), eps <= 0 or
  // weight_decay < 0.
  AdamW(const model::ParameterLayout& layout, AdamWOptions options);
  // The optimizer of elements [begin, end) of the buffer only (a ZeRO-1 shard): step() and
  // restore() take spans of end - begin elements, and give the bits the whole-buffer optimizer
  // gives those elements (each element's update is independent of the others).
  AdamW(const model::ParameterLayout& layout, AdamWOptions options, std::size_t begin,
        std::size_t end);

  // One update with learning rate `lr` (step() counts from 1 after the first call):
  //   p -= lr * weight_decay * p           (decay slices only)
  //   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
  //   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
  // in float32 per element, the same order as torch's single-tensor AdamW; multithreaded over
  // elements (each element's arithmetic is independent, so bits do not depend on threads).
  // The square root is IEEE's; torch's CPU build takes MKL's, one ulp off for some inputs, which
  // is the only difference (see optimizer.cpp). AVX-512, AVX2+FMA or portable code by the CPU,
  // lowered by the environment variable ANCHORCTX_ISA as the attention kernels are; same bits.
  void step(std::span<float> params, std::span<const float> grads, double lr);

  std::int64_t steps() const { return step_; }
  const AdamWOptions& options() const { return options_; }
  std::span<const float> exp_avg() const { return m_; }
  std::span<const float> exp_avg_sq() const { return v_; }
  // Restores state saved by a checkpoint. Throws anchorctx::Error on a size mismatch.
  void restore(std::int64_t steps, std::span<const float> exp_avg,
               std::span<const float> exp_avg_sq);

 private:
  AdamWOptions options_;
  std::vector<unsigned char> decay_;  // per element of the buffer: 1 where weight decay applies
  std::vector<float> m_, v_;
  std::int64_t step_ = 0;
};

// The L2 norm of all gradients (computed in double, summed in a fixed order so the result does
// not depend on threads). Non-finite when any gradient is.
double gradient_norm(std::span<const float> grads);

// gradient_norm's summation: blocks of this many elements, each summed in double, then the
// blocks' sums added in order. A shard that starts at a multiple of it computes its blocks'
// sums alone (gradient_block_sums) and the norm of the whole buffer comes out bit-identical.
inline constexpr std::size_t kGradientNormBlock = std::size_t{1} << 14;
std::vector<double> gradient_block_sums(std::span<const float> grads);
// The norm from every block's sum, in block order: sqrt(sum).
double gradient_norm_from_block_sums(std::span<const double> block_sums);

// clip_gradients with the norm already known (the global norm of a sharded buffer).
void clip_gradients_with_norm(std::span<float> grads, double norm, double max_norm);

// Scales `grads` by max_norm / (norm + 1e-6) when norm > max_norm (torch's clip_grad_norm_);
// max_norm <= 0 disables clipping. Returns the norm before clipping.
// Precisely as torch: the scale is float(max_norm / (norm + 1e-6)), applied when it is below 1.
// A non-finite norm leaves `grads` as they are (the caller sees it and skips the step; torch
// would multiply every gradient by NaN or 0).
double clip_gradients(std::span<float> grads, double max_norm);

}  // namespace anchorctx::train
