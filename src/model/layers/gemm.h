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

// A and B rounded to bf16 and multiplied through oneDNN with float32 accumulation into float32 C
// (bf16_gemm.cpp). beta is 0 or 1. Throws anchorctx::Error when the native path is unavailable.
void bf16_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m, std::int64_t n,
               std::int64_t k, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
               float beta, float* c, std::int64_t ldc);

// sgemm_fixed_blocks for emulated, bf16_gemm for native.
inline void layer_gemm(Bf16Compute compute, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m,
                       std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
                       const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (compute == Bf16Compute::native)
    bf16_gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
  else
    sgemm_fixed_blocks(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace anchorctx::model::detail
