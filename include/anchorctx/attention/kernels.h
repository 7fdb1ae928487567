// The attention kernels: forward and backward over a packed batch, skipping the tiles the
// BlockPlan leaves out. Backend: the CPU (AVX-512, AVX2+FMA or portable code, picked at run
// time); a CUDA backend will sit beside it behind the same functions.
//
// Shapes (Tq = plan.layout().total_q_tokens(), Tk = plan.layout().total_tokens(), equal unless
// the layout has a separate query layout; Hq = heads_q, Hkv = heads_kv, D = head_dim):
//   q, out, dout, dq  [Tq, Hq, D]     k, v, dk, dv  [Tk, Hkv, D]     lse  [Hq, Tq] (float32)
// Query head h reads key/value head h / (Hq / Hkv) (grouped-query attention).
// Tensors are of `dtype` (bf16 ones as raw bf16 bits); accumulation is float32. Each
// [tokens, heads, D] tensor has its own strides (in elements, `Strides`): row t of head h
// starts at t * token + h * head, the D values contiguous; 0 means dense ([T, H, D]), so the
// q, k and v slices of a fused [T, Hq + 2 Hkv, D] buffer are used in place (token stride
// (Hq + 2 Hkv) D, pointers offset by 0, Hq D and (Hq + Hkv) D). lse is always dense.
// lse[h, t] = log(sum over visible keys of exp(scale * q.k)); a row that sees no key gets
// out = 0 and lse = -inf. The backward recomputes each probability as exp(scale q.k - lse)
// from the float32 lse (as FlashAttention does, instead of storing P), so its error grows with
// |lse|: float32 scales at scale = 1/sqrt(D), but on unit-variance q and k dV is off by ~1e-4
// (relative, against float64) at scale 1e2, ~1e-2 at 1e4 and non-finite from 1e8.
//
// NaN: a non-finite value (NaN or +-inf) in an input row makes NaN every output that row
// reaches through the mask, and nothing else: out and lse of a query row are NaN when its q
// row, or the k or v row of a key it sees, holds one; in the backward, a query row is bad
// when its q, out, dout row or lse is (lse = -inf of a row that sees nothing is fine) or a key
// it sees is, and then its dq row and the dk and dv rows of every key it sees are NaN. Invisible
// values never leak (non-finite rows enter the products as zeros; the NaNs are written afterwards,
// which costs nothing when all is finite).
//
// Determinism: every output element is summed in an order fixed by the plan alone (key tiles,
// then query tiles, then heads ascending), each by one thread, so results are bit-identical
// across runs and thread counts.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/dtype.h"
#include "anchorctx/core/enum_names.h"

namespace anchorctx::attention {

struct AttentionDims {
  int heads_q = 0;
  int heads_kv = 0;
  int head_dim = 0;  // a multiple of 8, at most 256
};

struct KernelOptions {
  float scale = 0.0f;  // softmax scale; 0 means 1/sqrt(head_dim)
  int threads = 0;     // 0: OpenMP's default
  // bf16 tensors only. true: the products run on bf16 operands with float32 accumulation
  // (`vdpbf16ps`), P and dS rounded to bf16 before the products that take them, as
  // FlashAttention-2 does on GPUs -- where native_bf16_available(), else this is ignored.
  // false: float32 products on the bf16 values (exact products; the reference path that the
  // transformers-parity tests pin). Both stay within bf16 error scales of float64.
  bool native_bf16 = false;
};

// Element strides of a [tokens, heads, head_dim] tensor; 0 means dense (heads * head_dim and
// head_dim).
struct Strides {
  std::int64_t token = 0;
  std::int64_t head = 0;
};

struct ForwardTensors {
  core::DType dtype = core::DType::f32;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
};

// The strides of each tensor (default: all dense).
struct ForwardStrides {
  Strides q, k, v, out;
};

struct BackwardTensors {
  core::DType dtype = core::DType::f32;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* out = nullptr;
  const void* dout = nullptr;
  const float* lse = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
};

struct BackwardStrides {
  Strides q, k, v, out, dout, dq, dk, dv;
};

// Throws anchorctx::Error on bad dims (heads not dividing, head_dim not a multiple of 8 or
// above 256), a null tensor or a negative stride; writes nothing then. Outputs must not
// overlap each other or the inputs.
void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& tensors,
             const KernelOptions& options = {}, const ForwardStrides& strides = {});
void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& tensors,
              const KernelOptions& options = {}, const BackwardStrides& strides = {});

// How backward() shares its work among threads (0: all cores): `fused`, one work item per
// (sequence, kv head), where those items fill the threads' rounds to 85%; else
// `key_tiles_in_turn`, one item per key tile of a kv head, the dQ rows shared by several items
// taking their contributions in turn. The same bits either way; benchmarks report which ran.
enum class BackwardSchedule { fused, key_tiles_in_turn };
inline constexpr core::EnumName<BackwardSchedule> kBackwardScheduleNames[] = {
    {BackwardSchedule::fused, "fused"}, {BackwardSchedule::key_tiles_in_turn, "key_tiles_in_turn"}};
constexpr std::span<const core::EnumName<BackwardSchedule>> enum_names(BackwardSchedule) {
  return kBackwardScheduleNames;
}
constexpr std::string_view to_string(BackwardSchedule schedule) {
  return core::enum_name(schedule);
}
BackwardSchedule backward_schedule(const BlockPlan& plan, const AttentionDims& dims, int threads);

// The instruction set the kernels run with on this machine: "avx512", "avx2" or "portable".
// The environment variable ANCHORCTX_ISA (same names) lowers it, for tests and comparisons.
std::string kernel_isa();

// Whether KernelOptions::native_bf16 takes effect here: the CPU has AVX512_BF16 and
// ANCHORCTX_ISA leaves avx512 selected. When not, why_not (if not null) says why.
bool native_bf16_available(std::string* why_not = nullptr);

// The kernels a call with this dtype and these options runs: "amx_bf16" when bf16 products
// run natively on AMX tiles (the CPU has AMX-BF16, Linux grants its use, and the environment
// variable ANCHORCTX_AMX is not "off"), "avx512_bf16" when they run natively on `vdpbf16ps`,
// else kernel_isa().
std::string kernel_isa(core::DType dtype, const KernelOptions& options);

}  // namespace anchorctx::attention
