// The LM head fused with the cross-entropy loss, chunked over tokens: the [T, V] logits of a
// long window (16K x 32K floats = 2 GiB) never exist at once, only [chunk, V].
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"
#include "model/layers/gemm.h"
#include "model/layers/vector_math.h"

namespace anchorctx::model {

std::int64_t lm_head_chunk_rows(std::int64_t chunk) {
  if (!thread_invariant_gemms()) return chunk;
  return std::max(kGemmRowBlock, chunk / kGemmRowBlock * kGemmRowBlock);
}

LossSum lm_head_cross_entropy(const float* x, const float* weight,
                              std::span<const std::int32_t> targets, std::int64_t hidden,
                              std::int64_t vocab, std::int64_t chunk, bool round_bf16,
                              double grad_scale, float* dx, float* dweight, float* logits_out,
                              Bf16Compute compute, const std::uint16_t* weight_bits) {
  const OpScope scope(Op::lm_head_loss);
  const std::int64_t tokens = static_cast<std::int64_t>(targets.size());
  for (std::int64_t t = 0; t < tokens; ++t)
    if (targets[t] < -1 || targets[t] >= vocab)
      fail("cross-entropy: target[{}] = {} is outside [-1, {})", t, targets[t], vocab);
  require(chunk > 0, "cross-entropy: chunk must be positive");
  chunk = lm_head_chunk_rows(chunk);

  // The rows to compute: every row when the logits are wanted, else the targeted ones only
  // (an untargeted row adds nothing to the loss or the gradients). With thread-invariant GEMMs
  // every row, so that a row's logits come from the GEMM tile of its own kGemmRowBlock rows
  // (the same bits on a sequence-parallel shard as on the whole window) at the price of
  // computing untargeted rows' logits.
  const bool every_row = logits_out || thread_invariant_gemms();
  std::vector<std::int64_t> rows;
  rows.reserve(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t)
    if (every_row || targets[t] >= 0) rows.push_back(t);
  if (dx) std::fill(dx, dx + tokens * hidden, 0.0f);

  const std::int64_t n_rows = static_cast<std::int64_t>(rows.size());
  const std::int64_t c_max = std::min(chunk, std::max<std::int64_t>(n_rows, 1));
  // Scratch kept between calls (a [chunk, V] block is 131 MB at 1024 x 32000: allocating it per
  // call cost page faults on every step).
  thread_local std::vector<float> xc, logits, dxc;
  // Native: the chunk's x and dlogits as bf16 bits, each converted once for the two GEMMs that
  // read it (dlogits written as bits by the row loop, never as float32).
  thread_local std::vector<std::uint16_t> xc16, dlogits16;
  const bool native = compute == Bf16Compute::native;
  xc.resize(static_cast<std::size_t>(c_max * hidden));
  logits.resize(static_cast<std::size_t>(c_max * vocab));
  if (dx) dxc.resize(static_cast<std::size_t>(c_max * hidden));
  if (native) xc16.resize(static_cast<std::size_t>(c_max * hidden));
  if (native && dx) dlogits16.resize(static_cast<std::size_t>(c_max * vocab));
  // Plain pointers for the parallel loop: inside it, the name of a thread_local would be each
  // worker thread's own (empty) buffer.
  float* const logits_p = logits.data();
  std::uint16_t* const dlogits16_p = native && dx ? dlogits16.data() : nullptr;
  std::vector<double> row_loss(static_cast<std::size_t>(c_max));
  LossSum result;

  for (std::int64_t r0 = 0; r0 < n_rows; r0 += c_max) {
    const std::int64_t c = std::min(c_max, n_rows - r0);
    for (std::int64_t i = 0; i < c; ++i)
      std::memcpy(xc.data() + i * hidden, x + rows[r0 + i] * hidden, sizeof(float) * hidden);
    const std::uint16_t* const xc_bits = native ? xc16.data() : nullptr;
    if (native) detail::float_to_bf16(xc.data(), c * hidden, xc16.data());
    // logits [c, V] = xc [c, H] W^T
    detail::layer_gemm(compute, CblasNoTrans, CblasTrans, c, vocab, hidden, xc.data(), hidden,
                       weight, hidden, 0.0f, logits.data(), vocab, xc_bits, weight_bits);
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < c; ++i) {
      float* l = logits_p + i * vocab;
      if (round_bf16) detail::round_bf16_range(l, vocab);
      const std::int64_t t = rows[r0 + i];
      if (logits_out) std::memcpy(logits_out + t * vocab, l, sizeof(float) * vocab);
      const std::int32_t target = targets[t];
      row_loss[i] = 0.0;
      if (target < 0) {
        if (dlogits16_p)
          std::fill(dlogits16_p + i * vocab, dlogits16_p + (i + 1) * vocab, std::uint16_t{0});
        else if (dx)
          std::fill(l, l + vocab, 0.0f);
        continue;
      }
      const float m = detail::max_of(l, vocab);
      const float target_logit = l[target];
      // One exp per logit, kept for the gradient: e = exp(l - m) (float32, as torch's float32
      // softmax; the sum in float64, so the loss keeps its digits over 32K terms).
      const double sum = detail::exp_shifted_sum(l, vocab, m, dx ? l : nullptr);
      row_loss[i] = static_cast<double>(m) + std::log(sum) - static_cast<double>(target_logit);
      if (!dx) continue;
      // dlogits = (softmax - onehot) * scale, in place.
      const float inv = static_cast<float>(grad_scale / sum);
      const float scale = static_cast<float>(grad_scale);
      for (std::int64_t v = 0; v < vocab; ++v)
        l[v] *= inv;
      l[target] -= scale;
      if (dlogits16_p)
        detail::float_to_bf16_rows(l, 1, vocab, vocab, dlogits16_p + i * vocab, vocab);
      else if (round_bf16)
        detail::round_bf16_range(l, vocab);
    }
    for (std::int64_t i = 0; i < c; ++i) {
      result.loss += row_loss[i];
      if (targets[rows[r0 + i]] >= 0) ++result.tokens;
    }
    if (!dx) continue;
    // dxc [c, H] = dlogits [c, V] W [V, H];  dW [V, H] += dlogits^T xc
    detail::layer_gemm(compute, CblasNoTrans, CblasNoTrans, c, hidden, vocab, logits.data(), vocab,
                       weight, hidden, 0.0f, dxc.data(), hidden, dlogits16_p, weight_bits);
    detail::layer_gemm(compute, CblasTrans, CblasNoTrans, vocab, hidden, c, logits.data(), vocab,
                       xc.data(), hidden, 1.0f, dweight, hidden, dlogits16_p, xc_bits);
    for (std::int64_t i = 0; i < c; ++i)
      std::memcpy(dx + rows[r0 + i] * hidden, dxc.data() + i * hidden, sizeof(float) * hidden);
  }
  return result;
}

}  // namespace anchorctx::model
