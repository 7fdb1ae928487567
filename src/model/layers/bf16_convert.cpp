// float32 -> bf16 bits for the native GEMMs' operands, the same bits as core::float_to_bf16_bits
// (round to nearest even, every NaN to 0x7FC0) sixteen at a time with AVX-512 integer operations
// where the CPU has them. Not vcvtneps2bf16: it treats denormal inputs as zero and keeps NaN
// payloads, so its bits would differ from the emulated path's rounding on those inputs.
#include <immintrin.h>

#include <cstdint>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/isa.h"
#include "model/layers/gemm.h"

namespace anchorctx::model::detail {

namespace {

void row_portable(const float* src, std::int64_t n, std::uint16_t* dst) {
  for (std::int64_t i = 0; i < n; ++i)
    dst[i] = core::float_to_bf16_bits(src[i]);
}

// The zero-masking forms with an all-ones mask: the plain intrinsics start from an undefined
// vector that GCC 12 reports as maybe-uninitialized.
constexpr __mmask16 kAll = 0xFFFF;

// Sixteen floats to bf16 bits: (u + 0x7FFF + lsb) >> 16, NaN to 0x7FC0, narrowed to 16 bits.
[[gnu::target("avx512f,avx512bw,avx512vl")]] inline __m256i convert16(__m512i u) {
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll, u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_maskz_srli_epi32(
      kAll, _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  return _mm512_maskz_cvtepi32_epi16(kAll,
                                     _mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7FC0)));
}

[[gnu::target("avx512f,avx512bw,avx512vl")]] void row_avx512(const float* src, std::int64_t n,
                                                             std::uint16_t* dst) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        convert16(_mm512_loadu_si512(static_cast<const void*>(src + i))));
  if (i < n) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(dst + i, tail, convert16(_mm512_maskz_loadu_epi32(tail, src + i)));
  }
}

}  // namespace

void float_to_bf16_rows(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                        std::uint16_t* dst, std::int64_t ld_dst) {
  const bool avx512 = core::selected_isa() >= core::Isa::avx512;
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (std::int64_t r = 0; r < rows; ++r) {
    if (avx512)
      row_avx512(src + r * ld, cols, dst + r * ld_dst);
    else
      row_portable(src + r * ld, cols, dst + r * ld_dst);
  }
}

void float_to_bf16(const float* src, std::int64_t n, std::uint16_t* dst) {
  // Blocks of 16K elements as rows, so that long vectors convert on every thread.
  constexpr std::int64_t kBlock = 16384;
  const std::int64_t full = n / kBlock;
  float_to_bf16_rows(src, full, kBlock, kBlock, dst, kBlock);
  float_to_bf16_rows(src + full * kBlock, 1, n - full * kBlock, 0, dst + full * kBlock, 0);
}

}  // namespace anchorctx::model::detail
