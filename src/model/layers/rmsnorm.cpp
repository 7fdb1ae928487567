// RMSNorm (LlamaRMSNorm), forward and backward.
#include <cmath>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"

namespace anchorctx::model {

// Forward in float32 as transformers does (variance of the float32 input, rsqrt, product), with
// the bf16 model's two roundings: the normalised value cast back to the input dtype, then the
// product with the (bf16) weight.
void rmsnorm_forward(const float* x, const float* weight, std::int64_t tokens, std::int64_t hidden,
                     double eps, bool round_bf16, float* out, float* rstd) {
  const OpScope scope(Op::rmsnorm);
#pragma omp parallel for schedule(static) if (tokens > 64)
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* xr = x + t * hidden;
    float* o = out + t * hidden;
    float sum = 0.0f;
    for (std::int64_t i = 0; i < hidden; ++i)
      sum += xr[i] * xr[i];
    const float r = 1.0f / std::sqrt(sum / static_cast<float>(hidden) + static_cast<float>(eps));
    rstd[t] = r;
    if (round_bf16) {
      for (std::int64_t i = 0; i < hidden; ++i)
        o[i] = core::round_to_bf16(weight[i] * core::round_to_bf16(xr[i] * r));
    } else {
      for (std::int64_t i = 0; i < hidden; ++i)
        o[i] = weight[i] * (xr[i] * r);
    }
  }
}

// With n = x * rstd and g = dout * w:  dx = rstd * (g - n * mean(g * n)),  dw = sum_t dout * n.
// dweight is reduced over fixed blocks of tokens, then the blocks in order (deterministic).
void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dout,
                      std::int64_t tokens, std::int64_t hidden, bool accumulate_dx, float* dx,
                      float* dweight) {
  const OpScope scope(Op::rmsnorm);
  const std::int64_t blocks = (tokens + kReduceBlock - 1) / kReduceBlock;
  std::vector<float> partial(static_cast<std::size_t>(blocks * hidden), 0.0f);
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    float* dw = partial.data() + b * hidden;
    const std::int64_t t1 = std::min(tokens, (b + 1) * kReduceBlock);
    for (std::int64_t t = b * kReduceBlock; t < t1; ++t) {
      const float* xr = x + t * hidden;
      const float* g = dout + t * hidden;
      float* d = dx + t * hidden;
      const float r = rstd[t];
      float dot = 0.0f;
      for (std::int64_t i = 0; i < hidden; ++i)
        dot += g[i] * weight[i] * xr[i];
      const float c = dot * r * r / static_cast<float>(hidden);
      for (std::int64_t i = 0; i < hidden; ++i) {
        const float v = r * (g[i] * weight[i] - xr[i] * c);
        d[i] = accumulate_dx ? d[i] + v : v;
        dw[i] += g[i] * xr[i] * r;
      }
    }
  }
  for (std::int64_t b = 0; b < blocks; ++b)
    for (std::int64_t i = 0; i < hidden; ++i)
      dweight[i] += partial[b * hidden + i];
}

}  // namespace anchorctx::model
