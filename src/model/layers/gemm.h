// The GEMM entry points of the training layers (linear.cpp, cross_entropy.cpp), row-major,
// alpha 1, C = A B (+ C when beta is 1).
#pragma once

#include <cblas.h>

#include <cstdint>

#include "anchorctx/model/bf16_compute.h"

namespace anchorctx::model::detail {

// float32 sgemm whose bits do not depend on the thread count when set_thread_invariant_gemms is
// on (linear.cpp).
void sgemm_fixed_blocks(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m, std::int64_t n,
                        std::int64_t k, const float* a, std::int64_t lda, const float* b,
                        std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// dst[r * ld_dst + c] = bf16 bits of src[r * ld + c] (core::float_to_bf16_bits: round to nearest
// even, NaN to 0x7FC0), rows x cols; AVX-512 where selected, OpenMP over rows when large
// (bf16_convert.cpp). float_to_bf16: a flat array of n.
void float_to_bf16_rows(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                        std::uint16_t* dst, std::int64_t ld_dst);
void float_to_bf16(const float* src, std::int64_t n, std::uint16_t* dst);

// Native bf16 (bf16_gemm.cpp): A and B as bf16 multiplied through oneDNN with float32
// accumulation into float32 C; beta is 0 or 1. Each operand comes as float32 values (rounded to
// bf16 here, per call) and, optionally, as the caller's bf16 bits of the same values with the
// same leading dimension (a16 / b16, used as they are: no conversion). Throws anchorctx::Error
// when the native path is unavailable.
void bf16_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m, std::int64_t n,
               std::int64_t k, const float* a, std::int64_t lda, const std::uint16_t* a16,
               const float* b, std::int64_t ldb, const std::uint16_t* b16, float beta, float* c,
               std::int64_t ldc);

// sgemm_fixed_blocks for emulated, bf16_gemm for native (a16, b16: as there; emulated ignores
// them).
inline void layer_gemm(Bf16Compute compute, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m,
                       std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
                       const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc,
                       const std::uint16_t* a16 = nullptr, const std::uint16_t* b16 = nullptr) {
  if (compute == Bf16Compute::native)
    bf16_gemm(ta, tb, m, n, k, a, lda, a16, b, ldb, b16, beta, c, ldc);
  else
    sgemm_fixed_blocks(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace anchorctx::model::detail
