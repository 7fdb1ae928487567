// Linear layers through OpenBLAS sgemm (the GEMMs are where the training time goes).
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"
#include "model/layers/gemm.h"

namespace anchorctx::model {

namespace {
std::atomic<bool> g_thread_invariant{false};
}  // namespace

void set_thread_invariant_gemms(bool on) {
  g_thread_invariant = on;
}
bool thread_invariant_gemms() {
  return g_thread_invariant;
}

namespace detail {
// cblas_sgemm (row-major, alpha 1); by default one plain call (OpenBLAS splits it across its
// threads). With set_thread_invariant_gemms(true), C is cut into tiles of kGemmRowBlock rows
// (counted from row 0) by a column width that depends on n alone, each tile one sgemm call on
// one thread (the OpenMP OpenBLAS runs single-threaded inside a parallel region). Why: a plain
// call is partitioned by OpenBLAS across its threads, and the kernels at a partition's edge sum
// in another order, so its bits changed with omp_set_num_threads (the OpenMP OpenBLAS follows
// it) -- which broke layers.h's "results never depend on the thread count"
// (tests/model/layers_test.cpp, ReductionsAreBitIdenticalAcrossThreadCounts). Why the tiles
// depend on neither m nor the thread count: OpenBLAS's bits for a row also depend on the call's
// row count and the row's place in it (OpenBLAS 0.3.21: most sub-range calls differ from the
// whole call), so the rows [128 i, 128 (i + 1)) of a token shard that starts at a multiple of
// 128 are computed by the very call the whole window makes for them: sequence-parallel shards
// give the single-process bits (model/sequence_parallel.h). Also used by cross_entropy.cpp.
void sgemm_fixed_blocks(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, std::int64_t m, std::int64_t n,
                        std::int64_t k, const float* a, std::int64_t lda, const float* b,
                        std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const OpScope scope(Op::gemm);
  if (!thread_invariant_gemms()) {
    cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
                c, static_cast<int>(ldc));
    return;
  }
  // Each tile re-packs its parts of both operands, so tiles much smaller than this cost more:
  // on one thread (OpenBLAS 0.3.21, AVX-512), 128-row blocks of 1024 x 288 x 768 and the like
  // cost about 5% over a plain call, 64 rows 5-15%, 32 rows 15-60%. Columns: at most
  // kMaxColumns per tile, in equal widths (multiples of 16) so no tile is a sliver.
  constexpr std::int64_t kMaxColumns = 1024;
  const std::int64_t row_tiles = (m + kGemmRowBlock - 1) / kGemmRowBlock;
  const std::int64_t col_tiles = (n + kMaxColumns - 1) / kMaxColumns;
  const std::int64_t width = ((n + col_tiles - 1) / col_tiles + 15) / 16 * 16;
  const std::int64_t tiles = row_tiles * col_tiles;
  // A small product runs on the calling thread, as OpenBLAS runs it anyway (one thread at or
  // below m*n*k = 65536 x GEMM_MULTITHREAD_THRESHOLD), without a parallel region's cost. A
  // larger one runs inside a parallel region even when it is one tile: there OpenBLAS stays on
  // one thread, outside it would split the tile by the thread count.
  const bool parallel =
      static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) > 65536.0;
  // Which thread computes a tile changes nothing in its bits: dynamic balances short last ones.
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (std::int64_t i = 0; i < tiles; ++i) {
    const std::int64_t r0 = (i / col_tiles) * kGemmRowBlock, c0 = (i % col_tiles) * width;
    const int rows = static_cast<int>(std::min(kGemmRowBlock, m - r0));
    const int cols = static_cast<int>(std::min(width, n - c0));
    if (cols <= 0) continue;
    const float* ai = ta == CblasNoTrans ? a + r0 * lda : a + r0;
    const float* bi = tb == CblasNoTrans ? b + c0 : b + c0 * ldb;
    cblas_sgemm(CblasRowMajor, ta, tb, rows, cols, static_cast<int>(k), 1.0f, ai,
                static_cast<int>(lda), bi, static_cast<int>(ldb), beta, c + r0 * ldc + c0,
                static_cast<int>(ldc));
  }
}
}  // namespace detail

void linear_forward(const float* x, const float* weight, const float* bias, std::int64_t tokens,
                    std::int64_t in, std::int64_t out, bool round_bf16, float* y,
                    Bf16Compute compute, const Bf16Bits& bits) {
  if (tokens == 0) return;
  const OpScope scope(Op::linear_other);
  if (bias) {
#pragma omp parallel for schedule(static) if (tokens > 64)
    for (std::int64_t t = 0; t < tokens; ++t)
      std::copy(bias, bias + out, y + t * out);
  }
  // y [T, out] = x [T, in] * W^T  (+ y when a bias was laid down first)
  detail::layer_gemm(compute, CblasNoTrans, CblasTrans, tokens, out, in, x, in, weight, in,
                     bias ? 1.0f : 0.0f, y, out, bits.x, bits.weight);
  if (round_bf16) round_to_bf16({y, static_cast<std::size_t>(tokens * out)});
}

void linear_backward(const float* x, const float* weight, const float* dy, std::int64_t tokens,
                     std::int64_t in, std::int64_t out, bool accumulate_dx, float* dx,
                     float* dweight, float* dbias, Bf16Compute compute, const Bf16Bits& bits) {
  if (tokens == 0) return;
  const OpScope scope(Op::linear_other);
  // dx [T, in] = dy [T, out] * W [out, in]
  if (dx)
    detail::layer_gemm(compute, CblasNoTrans, CblasNoTrans, tokens, in, out, dy, out, weight, in,
                       accumulate_dx ? 1.0f : 0.0f, dx, in, bits.dy, bits.weight);
  // dW [out, in] += dy^T [out, T] * x [T, in]
  detail::layer_gemm(compute, CblasTrans, CblasNoTrans, out, in, tokens, dy, out, x, in, 1.0f,
                     dweight, in, bits.dy, bits.x);
  if (dbias) {
    const std::int64_t blocks = (tokens + kReduceBlock - 1) / kReduceBlock;
    std::vector<float> partial(static_cast<std::size_t>(blocks * out), 0.0f);
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      float* p = partial.data() + b * out;
      const std::int64_t t1 = std::min(tokens, (b + 1) * kReduceBlock);
      for (std::int64_t t = b * kReduceBlock; t < t1; ++t)
        for (std::int64_t o = 0; o < out; ++o)
          p[o] += dy[t * out + o];
    }
    for (std::int64_t b = 0; b < blocks; ++b)
      for (std::int64_t o = 0; o < out; ++o)
        dbias[o] += partial[b * out + o];
  }
}

}  // namespace anchorctx::model
