// The layers of the training model as forward/backward pairs over token-major float32 arrays
// (llm.c's shape: one plain function per direction, shapes in the comment above it).
//
// T = tokens, H = hidden size, V = vocabulary. Matrices are row-major; weights as nn.Linear
// stores them, [out, in]. Gradients of weights and biases are ACCUMULATED (+=) so that micro-
// batches add up; gradients of activations are written (=). Reductions over tokens run in a
// fixed order (blocks of kReduceBlock tokens, summed in order), so those results never depend on
// the thread count (the GEMMs: see set_thread_invariant_gemms). `round_bf16` emulates a PyTorch
// bf16 model: the output is rounded to bf16 where that op's bf16 output would be
// (docs/PRECISION.md).
#pragma once

#include <cstdint>
#include <span>

#include "anchorctx/model/bf16_compute.h"

namespace anchorctx::model {

inline constexpr std::int64_t kReduceBlock = 128;
// Thread-invariant GEMMs cut the rows of every product at multiples of this from row 0, and
// sequence-parallel token shards start at multiples of it, so a shard's rows meet the very GEMM
// calls the whole window's rows do (linear.cpp).
inline constexpr std::int64_t kGemmRowBlock = 128;

// The GEMMs go to OpenBLAS, whose threads split a product in a way that depends on the thread
// count, so by default their bits (and a run's) depend on it; every other op here does not.
// Thread-invariant GEMMs cut each product into tiles (kGemmRowBlock rows, columns by the width
// alone) computed one per thread: the same bits at any thread count and for a row block whatever
// rows follow it (what sequence-parallel exactness needs), about 12% slower training
// steps (reference preset, 4K window, 2 threads; measured with the former row-or-column blocks,
// which the tiles match within this machine's noise: docs/DISTRIBUTED_SP.md). Process-wide; off by
// default. Runs are bit-reproducible at a fixed thread count either way (resume relies on that).
void set_thread_invariant_gemms(bool on);
bool thread_invariant_gemms();

// Rounds every element to the nearest bf16 value (round to nearest even), in place.
void round_to_bf16(std::span<float> x);
// dst = bf16 bits of src (round to nearest even); for the attention kernel's bf16 path.
void to_bf16_bits(std::span<const float> src, std::span<std::uint16_t> dst);
void from_bf16_bits(std::span<const std::uint16_t> src, std::span<float> dst);

// out[t, :] = table[ids[t], :]        ids [T], table [V, H], out [T, H]
// Throws anchorctx::Error naming the position of an id outside [0, V).
void embedding_forward(std::span<const std::int32_t> ids, const float* table, std::int64_t vocab,
                       std::int64_t hidden, float* out);
// dtable[ids[t], :] += dout[t, :]      (threads split the hidden columns: deterministic)
void embedding_backward(std::span<const std::int32_t> ids, const float* dout, std::int64_t hidden,
                        float* dtable);

// RMSNorm as LlamaRMSNorm: rstd[t] = 1 / sqrt(mean(x[t]^2) + eps) (float32),
// out = weight * (x * rstd); in bf16 mode out = bf16(weight * bf16(x * rstd)).
//   x, out [T, H]; weight [H]; rstd [T] (saved for the backward)
void rmsnorm_forward(const float* x, const float* weight, std::int64_t tokens, std::int64_t hidden,
                     double eps, bool round_bf16, float* out, float* rstd);
// dx = rstd * (w*dout - x * rstd^2 * mean(w*dout*x)), dweight += sum_t dout * x * rstd.
// dx may alias nothing; `accumulate_dx` adds into dx instead of writing (residual branches).
void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dout,
                      std::int64_t tokens, std::int64_t hidden, bool accumulate_dx, float* dx,
                      float* dweight);

// Native bf16 only: GEMM operands the caller already holds as bf16 bits (the same values, the
// same dense layout as the float32 arrays passed beside them), so that an operand several GEMMs
// read -- a weight, a normed input feeding q, k and v -- is converted once, not per GEMM. Null:
// converted by the GEMM. The emulated path ignores them.
struct Bf16Bits {
  const std::uint16_t* x = nullptr;       // the layer input [T, in]
  const std::uint16_t* weight = nullptr;  // [out, in]
  const std::uint16_t* dy = nullptr;      // linear_backward: the output gradient [T, out]
};

// y [T, out] = x [T, in] W^T + bias (bias may be null); bf16: y rounded.
// `compute` native: the GEMMs of this layer (and of linear_backward, lm_head_cross_entropy) run
// on bf16 operands through oneDNN (bf16_compute.h); for bf16 precision only.
void linear_forward(const float* x, const float* weight, const float* bias, std::int64_t tokens,
                    std::int64_t in, std::int64_t out, bool round_bf16, float* y,
                    Bf16Compute compute = Bf16Compute::emulated, const Bf16Bits& bits = {});
// dx [T, in] = dy W (or += when accumulate_dx); dW [out, in] += dy^T x; dbias += sum_t dy.
// dx null: not needed.
void linear_backward(const float* x, const float* weight, const float* dy, std::int64_t tokens,
                     std::int64_t in, std::int64_t out, bool accumulate_dx, float* dx,
                     float* dweight, float* dbias, Bf16Compute compute = Bf16Compute::emulated,
                     const Bf16Bits& bits = {});

// h = silu(gate) * up, elementwise over n; bf16: silu rounded, then the product rounded
// (act_fn(gate_proj(x)) * up_proj(x) in a bf16 model).
void swiglu_forward(const float* gate, const float* up, std::int64_t n, bool round_bf16, float* h);
// dgate, dup from dh (in float32 from the saved inputs).
void swiglu_backward(const float* gate, const float* up, const float* dh, std::int64_t n,
                     float* dgate, float* dup);

// out = a + b (elementwise over n); bf16: rounded. out may alias a.
void add_forward(const float* a, const float* b, std::int64_t n, bool round_bf16, float* out);

// The LM head fused with cross-entropy, in chunks of `chunk` tokens so the [T, V] logits never
// exist at once:
//   logits_c = x_c W^T (bf16: rounded, then upcast as transformers' loss does)
//   loss    += sum over targeted t of logsumexp(logits[t]) - logits[t, target[t]]
//   dlogits  = (softmax - onehot) * grad_scale on targeted rows, 0 elsewhere (bf16: rounded)
//   dx_c     = dlogits W;  dW += dlogits^T x_c
// targets [T] (-1: no loss at t), x [T, H], W [V, H]. `dx` null: forward only (no gradients).
// `logits_out` non-null: the full [T, V] logits are copied there (tests, evaluation).
// Native: each chunk's x and dlogits are converted to bf16 once for the GEMMs that read them
// (dlogits written as bf16 bits by the softmax loop itself); `weight_bits`, W's bf16 bits,
// spares converting W for each chunk's three GEMMs.
// Returns the summed loss (float64) and the number of targeted tokens. Throws anchorctx::Error
// naming the position of a target outside [-1, V).
// With thread-invariant GEMMs, chunks are whole kGemmRowBlock multiples (rounded down, at
// least one block) and every row is computed (see cross_entropy.cpp); otherwise `chunk`.
std::int64_t lm_head_chunk_rows(std::int64_t chunk);
struct LossSum {
  double loss = 0.0;
  std::int64_t tokens = 0;
};
LossSum lm_head_cross_entropy(const float* x, const float* weight,
                              std::span<const std::int32_t> targets, std::int64_t hidden,
                              std::int64_t vocab, std::int64_t chunk, bool round_bf16,
                              double grad_scale, float* dx, float* dweight,
                              float* logits_out = nullptr,
                              Bf16Compute compute = Bf16Compute::emulated,
                              const std::uint16_t* weight_bits = nullptr);

}  // namespace anchorctx::model
