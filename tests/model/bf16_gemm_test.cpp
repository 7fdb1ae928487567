// detail::bf16_gemm (the native bf16 GEMM: oneDNN on AVX512_BF16) at every kind of size against a
// float64 reference: dimensions of 1..127 (narrower than one thread-invariant block of 128, the
// shapes of small models and of sequence-parallel shards under 128 tokens), exactly 128, and
// non-multiples of 128 above it; both transposes; beta 0 and 1; operands given as float32 with a
// leading dimension wider than their columns, or as the caller's bits; thread-invariant blocks
// on (what --sp turns on) and off. Skipped, saying why, where the native path is unavailable.
//
// The tolerance. The operands are bf16 values, so every product is exact in float32 and only
// the float32 sums round: an output is within (k - 1) u s of the exact sum, s = sum_p |a_ip b_pj|
// and u = 2^-24, whatever the summation order (bf16_native_test.cpp argues the same bound); beta
// 1 adds C's old value, one more rounding of at most u (s + |c|). We allow (k + 1) u (s + |c|).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/layers.h"
#include "model/layers/gemm.h"

namespace anchorctx::model {
namespace {

constexpr double kU32 = 1.0 / (1 << 24);  // float32 unit roundoff

std::size_t sz(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

struct GemmCase {
  std::int64_t m, n, k;
};

class NativeBf16Gemm : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!native_bf16_available(&why)) GTEST_SKIP() << "native bf16 unavailable here: " << why;
    threads_ = omp_get_max_threads();
    omp_set_num_threads(2);  // several blocks really run on several threads
  }
  void TearDown() override {
    set_thread_invariant_gemms(false);
    if (threads_ > 0) omp_set_num_threads(threads_);
  }

 public:
  // rows x cols bf16 values (normal), stored with leading dimension ld; the padding is NaN, so
  // reading it shows.
  std::vector<float> operand(std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(sz(rows * ld), std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        v[sz(r * ld + c)] = core::round_to_bf16(dist(rng_));
    return v;
  }

 private:
  std::mt19937_64 rng_{20260611};
  int threads_ = 0;
};

// C = op(A) op(B) (+ C) for one case, every transpose, beta and operand form, against float64.
void check_case(NativeBf16Gemm& test, const GemmCase& g, bool invariant) {
  const std::int64_t m = g.m, n = g.n, k = g.k;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const bool bits : {false, true}) {
        const float beta = (ta != tb) ? 1.0f : 0.0f;
        SCOPED_TRACE(testing::Message()
                     << "m " << m << " n " << n << " k " << k << " ta " << ta << " tb " << tb
                     << " bits " << bits << " beta " << beta << " invariant " << invariant);
        // Stored A is [k, m] when transposed, else [m, k]; B is [n, k] or [k, n]; each with 3
        // columns of padding.
        const std::int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
        const std::int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
        const std::int64_t lda = a_cols + 3, ldb = b_cols + 3, ldc = n + 3;
        const auto a = test.operand(a_rows, a_cols, lda), b = test.operand(b_rows, b_cols, ldb);
        std::vector<std::uint16_t> a16(a.size()), b16(b.size());
        for (std::size_t i = 0; i < a.size(); ++i)
          a16[i] = core::float_to_bf16_bits(a[i]);
        for (std::size_t i = 0; i < b.size(); ++i)
          b16[i] = core::float_to_bf16_bits(b[i]);
        const auto c0 = test.operand(m, n, ldc);
        std::vector<float> c = c0;
        detail::bf16_gemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                          a.data(), lda, bits ? a16.data() : nullptr, b.data(), ldb,
                          bits ? b16.data() : nullptr, beta, c.data(), ldc);
        for (std::int64_t i = 0; i < m; ++i) {
          for (std::int64_t j = 0; j < n; ++j) {
            double exact = beta != 0.0f ? c0[sz(i * ldc + j)] : 0.0, scale = std::abs(exact);
            for (std::int64_t p = 0; p < k; ++p) {
              const double x = ta ? a[sz(p * lda + i)] : a[sz(i * lda + p)];
              const double y = tb ? b[sz(j * ldb + p)] : b[sz(p * ldb + j)];
              exact += x * y;
              scale += std::abs(x * y);
            }
            const double got = c[sz(i * ldc + j)];
            ASSERT_LE(std::abs(got - exact), static_cast<double>(k + 1) * kU32 * scale)
                << "C[" << i << ", " << j << "] = " << got << ", exact " << exact;
          }
          // C's padding is never written.
          for (std::int64_t j = n; j < ldc; ++j)
            ASSERT_TRUE(std::isnan(c[sz(i * ldc + j)])) << "C[" << i << ", " << j << "] written";
        }
      }
}

// Sizes: under one block of 128 (1, 5, 31, 64, 127) on either side, exactly 128, one past it,
// and several blocks with a short last one (300: 128 + 128 + 44 when invariant).
const std::vector<GemmCase> kCases = {
    {1, 1, 1},     {1, 300, 24},  {300, 1, 24},  {5, 64, 130},   {64, 5, 7},
    {127, 127, 1}, {31, 129, 64}, {129, 31, 64}, {128, 128, 24}, {300, 257, 33},
};

TEST_F(NativeBf16Gemm, SmallAndUnevenSizesMatchFloat64WithThreadInvariantBlocks) {
  set_thread_invariant_gemms(true);
  for (const GemmCase& g : kCases)
    check_case(*this, g, true);
}

TEST_F(NativeBf16Gemm, SmallAndUnevenSizesMatchFloat64WithOneDnnThreading) {
  set_thread_invariant_gemms(false);
  for (const GemmCase& g : kCases)
    check_case(*this, g, false);
}

}  // namespace
}  // namespace anchorctx::model
