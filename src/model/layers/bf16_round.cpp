// bf16 emulation helpers: a bf16 tensor of PyTorch is held here as float32 values that bf16 can
// represent exactly, so every GEMM can run through sgemm (a bf16 x bf16 product is exact in
// float32 and the sums accumulate in float32, as bf16 GEMMs do).
#include <cstdint>
#include <span>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"

namespace anchorctx::model {

void round_to_bf16(std::span<float> x) {
  const OpScope scope(Op::elementwise);
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  float* p = x.data();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i)
    p[i] = core::round_to_bf16(p[i]);
}

void to_bf16_bits(std::span<const float> src, std::span<std::uint16_t> dst) {
  const OpScope scope(Op::elementwise);
  const std::int64_t n = static_cast<std::int64_t>(src.size());
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i)
    dst[i] = core::float_to_bf16_bits(src[i]);
}

void from_bf16_bits(std::span<const std::uint16_t> src, std::span<float> dst) {
  const OpScope scope(Op::elementwise);
  const std::int64_t n = static_cast<std::int64_t>(src.size());
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i)
    dst[i] = core::bf16_bits_to_float(src[i]);
}

void add_forward(const float* a, const float* b, std::int64_t n, bool round_bf16, float* out) {
  const OpScope scope(Op::elementwise);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) {
    const float s = a[i] + b[i];
    out[i] = round_bf16 ? core::round_to_bf16(s) : s;
  }
}

}  // namespace anchorctx::model
