// Entry points of the CPU kernels, one namespace per instruction set (kernels_impl.h).
// Callers go through attention::forward/backward (kernels.cpp), which validates and picks.
#pragma once

#include "anchorctx/attention/kernels.h"

namespace anchorctx::attention::cpu {

#define ANCHORCTX_DECLARE_CPU_KERNELS(isa)                                                  \
  namespace isa {                                                                           \
  void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,   \
               float scale, int threads);                                                   \
  void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t, \
                float scale, int threads);                                                  \
  }

ANCHORCTX_DECLARE_CPU_KERNELS(avx512)
ANCHORCTX_DECLARE_CPU_KERNELS(avx2)
ANCHORCTX_DECLARE_CPU_KERNELS(portable)
#undef ANCHORCTX_DECLARE_CPU_KERNELS

enum class Isa { portable, avx2, avx512 };

// The best instruction set this CPU supports, lowered by ANCHORCTX_ISA if set.
Isa select_isa();
const char* isa_name(Isa isa);

}  // namespace anchorctx::attention::cpu
