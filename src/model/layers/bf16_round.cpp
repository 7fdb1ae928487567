// bf16 emulation helpers: a bf16 tensor of PyTorch is held here as float32 values that bf16 can
// represent exactly, so every GEMM can run through sgemm (a bf16 x bf16 product is exact in
// float32 and the sums accumulate in float32, as bf16 GEMMs do).
#include <algorithm>
#include <cstdint>
#include <span>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"
#include "model/layers/gemm.h"
#include "model/layers/vector_math.h"

namespace anchorctx::model {

namespace {
constexpr std::int64_t kBlock = 4096;  // elements per call of a range function
}  // namespace

void round_to_bf16(std::span<float> x) {
  const OpScope scope(Op::elementwise);
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  float* p = x.data();
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t b = 0; b < blocks; ++b)
    detail::round_bf16_range(p + b * kBlock, std::min(kBlock, n - b * kBlock));
}

void to_bf16_bits(std::span<const float> src, std::span<std::uint16_t> dst) {
  const OpScope scope(Op::elementwise);
  // The native GEMMs' converter: the same bits, sixteen at a time on AVX-512.
  detail::float_to_bf16(src.data(), static_cast<std::int64_t>(src.size()), dst.data());
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
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t k = 0; k < blocks; ++k) {
    const std::int64_t i = k * kBlock;
    detail::add_range(a + i, b + i, std::min(kBlock, n - i), round_bf16, out + i);
  }
}

}  // namespace anchorctx::model
