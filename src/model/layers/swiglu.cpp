// SwiGLU: silu(gate) * up, the Llama MLP's nonlinearity.
#include <cmath>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"

namespace anchorctx::model {

namespace {
inline float sigmoid(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}
}  // namespace

void swiglu_forward(const float* gate, const float* up, std::int64_t n, bool round_bf16, float* h) {
  const OpScope scope(Op::swiglu);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    float s = g * sigmoid(g);
    if (round_bf16) s = core::round_to_bf16(s);
    const float v = s * up[i];
    h[i] = round_bf16 ? core::round_to_bf16(v) : v;
  }
}

// d silu(g)/dg = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
void swiglu_backward(const float* gate, const float* up, const float* dh, std::int64_t n,
                     float* dgate, float* dup) {
  const OpScope scope(Op::swiglu);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i], sg = sigmoid(g);
    const float silu = g * sg;
    dup[i] = dh[i] * silu;
    dgate[i] = dh[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
  }
}

}  // namespace anchorctx::model
