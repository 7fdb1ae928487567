// Entry points of the CPU kernels, one namespace per instruction set (kernels_impl.h).
// Callers go through attention::forward/backward (kernels.cpp), which validates and picks.
#pragma once

#include "anchorctx/core/isa.h"

#include "anchorctx/attention/kernels.h"

namespace anchorctx::attention::cpu {

#define ANCHORCTX_DECLARE_CPU_KERNELS(isa)                                                  \
  namespace isa {                                                                           \
  void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,   \
               const ForwardStrides& st, float scale, int threads);                         \
  void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t, \
                const BackwardStrides& st, float scale, int threads);                       \
  }

ANCHORCTX_DECLARE_CPU_KERNELS(avx512)
// AVX-512 with AVX512_BF16: bf16 tensors multiplied natively (kernels_native_bf16.h), float32
// ones as avx512.
ANCHORCTX_DECLARE_CPU_KERNELS(avx512_bf16)
// The same with AMX-BF16: the native kernels' products on AMX tiles (amx_tile_gemm.h).
ANCHORCTX_DECLARE_CPU_KERNELS(amx_bf16)
ANCHORCTX_DECLARE_CPU_KERNELS(avx2)
ANCHORCTX_DECLARE_CPU_KERNELS(portable)
#undef ANCHORCTX_DECLARE_CPU_KERNELS

// The instruction set: the best this CPU supports, lowered by ANCHORCTX_ISA (core/isa.h).
using core::Isa;
using core::isa_name;
inline Isa select_isa() {
  return core::selected_isa();
}

}  // namespace anchorctx::attention::cpu
