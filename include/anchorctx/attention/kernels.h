// The attention kernels: forward and backward over a packed batch, skipping the tiles the
// BlockPlan leaves out. Backend: the CPU (AVX-512, AVX2+FMA or portable code, picked at run
// time); a CUDA backend will sit beside it behind the same functions.
//
// Shapes (T = plan.layout().total_tokens(), Hq = heads_q, Hkv = heads_kv, D = head_dim):
//   q, out, dout, dq  [T, Hq, D]      k, v, dk, dv  [T, Hkv, D]      lse  [Hq, T] (float32)
// Query head h reads key/value head h / (Hq / Hkv) (grouped-query attention).
// Tensors are dense, row-major, of `dtype` (bf16 ones as raw bf16 bits); accumulation is
// float32. lse[h, t] = log(sum over visible keys of exp(scale * q.k)); a row that sees no key
// gets out = 0 and lse = -inf.
//
// Determinism: every output element is summed in an order fixed by the plan alone (key tiles,
// then query tiles, then heads ascending), each by one thread, so results are bit-identical
// across runs and thread counts.
#pragma once

#include <cstdint>
#include <string>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/dtype.h"

namespace anchorctx::attention {

struct AttentionDims {
  int heads_q = 0;
  int heads_kv = 0;
  int head_dim = 0;  // a multiple of 8, at most 256
};

struct KernelOptions {
  float scale = 0.0f;  // softmax scale; 0 means 1/sqrt(head_dim)
  int threads = 0;     // 0: OpenMP's default
};

struct ForwardTensors {
  core::DType dtype = core::DType::f32;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  float* lse = nullptr;
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

// Throws anchorctx::Error on bad dims (heads not dividing, head_dim not a multiple of 8 or
// above 256) or a null tensor; writes nothing then.
void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& tensors,
             const KernelOptions& options = {});
void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& tensors,
              const KernelOptions& options = {});

// The instruction set the kernels run with on this machine: "avx512", "avx2" or "portable".
// The environment variable ANCHORCTX_ISA (same names) lowers it, for tests and comparisons.
std::string kernel_isa();

}  // namespace anchorctx::attention
