// SwiGLU: silu(gate) * up, the Llama MLP's nonlinearity. The element loops are in
// vector_math.cpp (AVX-512 where selected); here they are cut into blocks for the threads.
#include <algorithm>

#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"
#include "model/layers/vector_math.h"

namespace anchorctx::model {

namespace {
constexpr std::int64_t kBlock = 4096;  // elements per call of a range function
}  // namespace

void swiglu_forward(const float* gate, const float* up, std::int64_t n, bool round_bf16, float* h) {
  const OpScope scope(Op::swiglu);
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t i = b * kBlock;
    detail::swiglu_forward_range(gate + i, up + i, std::min(kBlock, n - i), round_bf16, h + i);
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dh, std::int64_t n,
                     float* dgate, float* dup) {
  const OpScope scope(Op::swiglu);
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t i = b * kBlock;
    detail::swiglu_backward_range(gate + i, up + i, dh + i, std::min(kBlock, n - i), dgate + i,
                                  dup + i);
  }
}

}  // namespace anchorctx::model
