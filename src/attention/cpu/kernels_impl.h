// The CPU attention kernels, written once and compiled once per instruction set: a kernel TU
// defines ANCHORCTX_ISA (a namespace name), ANCHORCTX_VEC_WIDTH, ANCHORCTX_GEMM_ROWS and
// ANCHORCTX_GEMM_VECS, then includes this file. Everything below lands in
// anchorctx::attention::cpu::ANCHORCTX_ISA, so the copies never share a symbol.
//
// The algorithm is FlashAttention-2 on CPU tiles, driven by the BlockPlan:
// - forward (algorithm 1): one work item per (query tile, kv head); for each step of the key
//   tiles the plan lists (a partial tile, or a run of full ones: next_forward_step), S = Q K^T,
//   mask (partial tiles only), online softmax, O += P V; the row log-sum-exp is saved for the
//   backward.
// - backward (algorithm 2): for each key tile of one kv head and each query tile that sees it:
//   recompute P from the saved lse, then dV, dP, dS, dK, and dQ. Work items are whole
//   sequences or single key tiles (schedule_backward); dQ rows take their contributions in
//   ascending key-tile order whichever thread computes them (dq_turns.h): bit-identical for
//   any thread count.
// The parts, included below in this order: kernels_memory.h (aligned arrays, the per-thread
// scratch), kernels_staging.h (element access, the inputs staged as float32 rows and
// transposed key tiles), kernels_masking.h, kernels_forward.h, kernels_backward.h (with the
// backward's schedules), and, in the TUs with AVX512_BF16, kernels_native_bf16.h.
// Scores are kept in base 2: Q is pre-scaled by scale * log2(e), so softmax uses exp2.
// Which keys a query row sees comes from visible_keys (mask.h), computed once per call for
// every query row (row_spans); non-finite input rows enter the products as zeros and are
// flagged for nan_rules.h.
#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <limits>
#include <memory>
#include <vector>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/core/bf16.h"
#include "attention/cpu/cpu_kernels.h"
#include "attention/cpu/dq_turns.h"
#include "attention/cpu/nan_rules.h"

namespace anchorctx::attention::cpu::ANCHORCTX_ISA {

#include "attention/cpu/simd.h"
#include "attention/cpu/tile_gemm.h"

namespace {

using S = Simd;
using V = S::V;
constexpr int W = S::W;
using Gemm = TileGemm<ANCHORCTX_GEMM_ROWS, ANCHORCTX_GEMM_VECS>;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int round_up(int x, int multiple) {
  return (x + multiple - 1) / multiple * multiple;
}

// The parts, each using those before it (blank lines keep clang-format from sorting them).
#include "attention/cpu/kernels_memory.h"

#include "attention/cpu/kernels_staging.h"

#include "attention/cpu/kernels_masking.h"

#include "attention/cpu/kernels_forward.h"

#include "attention/cpu/kernels_backward.h"

#if defined(ANCHORCTX_NATIVE_BF16)
#include "attention/cpu/kernels_native_bf16.h"
#endif

}  // namespace

void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
             const ForwardStrides& st, float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    forward_typed<float>(plan, dims, t, st, scale, threads);
  } else {
#if defined(ANCHORCTX_NATIVE_BF16)
    native_forward(plan, dims, t, st, scale, threads);
#else
    forward_typed<std::uint16_t>(plan, dims, t, st, scale, threads);
#endif
  }
}

void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
              const BackwardStrides& st, float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    backward_typed<float>(plan, dims, t, st, scale, threads);
  } else {
#if defined(ANCHORCTX_NATIVE_BF16)
    native_backward(plan, dims, t, st, scale, threads);
#else
    backward_typed<std::uint16_t>(plan, dims, t, st, scale, threads);
#endif
  }
}

}  // namespace anchorctx::attention::cpu::ANCHORCTX_ISA
