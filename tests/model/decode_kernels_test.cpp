// Decoding's products (src/model/layers/decode_kernels.h) against float64 sums on fresh random
// inputs and awkward shapes (columns and dims around the 16-float vector, one row, one position,
// strided rows), outputs poisoned so an unwritten element shows; and the property decoding is
// built on: an element's bits do not depend on the batch it is computed in, its place in it, or
// the thread count. Every path this CPU has (AVX-512, AVX2, the plain loops), and AVX2's bits
// equal to AVX-512's.
#include "model/layers/decode_kernels.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "anchorctx/core/isa.h"
#include "support/env_override.h"
#include "support/model_isa_paths.h"

namespace anchorctx::model::detail {
namespace {

constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_values(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v)
    x = u(rng);
  return v;
}

// A float32 sum of n terms in any order is within about (n + 2) eps of the sum of magnitudes.
double tolerance(std::int64_t terms, double magnitude) {
  return (static_cast<double>(terms) + 2.0) * std::ldexp(1.0, -23) * magnitude + 1e-30;
}

TEST(DecodeKernels, BatchedMatvecMatchesFloat64) {
  std::mt19937 rng(41);
  test::for_each_model_isa_path([&] {
    for (const std::int64_t rows : {1, 3, 4, 5, 17, 38})
      for (const std::int64_t cols : {1, 15, 16, 17, 64, 100, 513})
        for (const std::int64_t batch : {1, 3, 4, 5, 9})
          for (const bool with_bias : {false, true}) {
            // Every matrix padded: rows of w and x longer than cols, out wider than rows.
            const std::int64_t ldw = cols + 3, ldx = cols + 5, ldo = rows + 2;
            const std::vector<float> w = random_values(static_cast<std::size_t>(rows * ldw), rng);
            const std::vector<float> x = random_values(static_cast<std::size_t>(batch * ldx), rng);
            const std::vector<float> bias = random_values(static_cast<std::size_t>(rows), rng);
            std::vector<float> out(static_cast<std::size_t>(batch * ldo), kPoison);
            batched_matvec(w.data(), ldw, with_bias ? bias.data() : nullptr, rows, cols, x.data(),
                           ldx, batch, out.data(), ldo);
            for (std::int64_t b = 0; b < batch; ++b)
              for (std::int64_t r = 0; r < ldo; ++r) {
                const float got = out[static_cast<std::size_t>(b * ldo + r)];
                if (r >= rows) {
                  ASSERT_TRUE(std::isnan(got)) << "written past the rows: " << b << ", " << r;
                  continue;
                }
                double want = with_bias ? bias[static_cast<std::size_t>(r)] : 0.0, mag = 0.0;
                for (std::int64_t c = 0; c < cols; ++c) {
                  const double t = static_cast<double>(w[static_cast<std::size_t>(r * ldw + c)]) *
                                   x[static_cast<std::size_t>(b * ldx + c)];
                  want += t;
                  mag += std::abs(t);
                }
                ASSERT_NEAR(got, want, tolerance(cols, mag + std::abs(want)))
                    << rows << " x " << cols << ", batch " << batch << ", element " << b << ", "
                    << r;
              }
          }
  });
}

// A weight given as bf16 bits gives the bits of the float32 call on the same (bf16) values.
TEST(DecodeKernels, Bf16WeightBitsGiveTheFloatResult) {
  std::mt19937 rng(61);
  test::for_each_model_isa_path([&] {
    for (const std::int64_t cols : {1, 7, 8, 9, 15, 16, 17, 24, 100, 513})
      for (const std::int64_t batch : {1, 3, 6}) {
        const std::int64_t rows = 21, ldw = cols + 1;
        std::vector<float> w = random_values(static_cast<std::size_t>(rows * ldw), rng);
        std::vector<std::uint16_t> bits(w.size());
        for (std::size_t i = 0; i < w.size(); ++i) {
          bits[i] = static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(w[i]) >> 16);
          w[i] = std::bit_cast<float>(static_cast<std::uint32_t>(bits[i]) << 16);
        }
        const std::vector<float> x = random_values(static_cast<std::size_t>(batch * cols), rng);
        const std::vector<float> bias = random_values(static_cast<std::size_t>(rows), rng);
        std::vector<float> from_float(static_cast<std::size_t>(batch * rows), kPoison);
        std::vector<float> from_bits(from_float.size(), kPoison);
        batched_matvec(w.data(), ldw, bias.data(), rows, cols, x.data(), cols, batch,
                       from_float.data(), rows);
        batched_matvec(bits.data(), ldw, bias.data(), rows, cols, x.data(), cols, batch,
                       from_bits.data(), rows);
        EXPECT_EQ(std::memcmp(from_float.data(), from_bits.data(), from_bits.size() * 4), 0)
            << cols << " columns, batch " << batch;
      }
  });
}

TEST(DecodeKernels, BatchedMatvecBitsDoNotDependOnBatchOrThreads) {
  std::mt19937 rng(43);
  const std::int64_t rows = 301, cols = 257, batch = 7;  // large enough to run on threads
  const std::vector<float> w = random_values(static_cast<std::size_t>(rows * cols), rng);
  const std::vector<float> x = random_values(static_cast<std::size_t>(batch * cols), rng);
  const std::vector<float> bias = random_values(static_cast<std::size_t>(rows), rng);
  const int threads = omp_get_max_threads();
  test::for_each_model_isa_path([&] {
    std::vector<float> together(static_cast<std::size_t>(batch * rows), kPoison);
    batched_matvec(w.data(), cols, bias.data(), rows, cols, x.data(), cols, batch, together.data(),
                   rows);
    for (const int t : {1, 2, 3}) {
      omp_set_num_threads(t);
      for (std::int64_t b = 0; b < batch; ++b) {
        // Row b alone, and rows b.. as the head of a smaller batch.
        std::vector<float> alone(static_cast<std::size_t>(rows), kPoison);
        batched_matvec(w.data(), cols, bias.data(), rows, cols, x.data() + b * cols, cols, 1,
                       alone.data(), rows);
        EXPECT_EQ(std::memcmp(alone.data(), together.data() + b * rows, alone.size() * 4), 0)
            << "row " << b << " alone, " << t << " threads";
        std::vector<float> tail(static_cast<std::size_t>((batch - b) * rows), kPoison);
        batched_matvec(w.data(), cols, bias.data(), rows, cols, x.data() + b * cols, cols,
                       batch - b, tail.data(), rows);
        EXPECT_EQ(std::memcmp(tail.data(), together.data() + b * rows, tail.size() * 4), 0)
            << "rows " << b << ".. as a batch, " << t << " threads";
      }
      // A range of weight rows (attention's shorter caches) gives those rows' bits too.
      std::vector<float> part(static_cast<std::size_t>(batch * 13), kPoison);
      batched_matvec(w.data() + 50 * cols, cols, bias.data() + 50, 13, cols, x.data(), cols, batch,
                     part.data(), 13);
      for (std::int64_t b = 0; b < batch; ++b)
        EXPECT_EQ(std::memcmp(part.data() + b * 13, together.data() + b * rows + 50, 13 * 4), 0);
    }
    omp_set_num_threads(threads);
  });
}

TEST(DecodeKernels, WeightedRowsSumMatchesFloat64) {
  std::mt19937 rng(47);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  test::for_each_model_isa_path([&] {
    for (const std::int64_t heads : {1, 2, 3, 4, 5, 8})
      for (const std::int64_t dim : {1, 15, 16, 17, 64, 65, 100, 130})
        for (const std::int64_t length : {1, 2, 37}) {
          const std::int64_t ldp = length + 2, ldv = dim + 7, ldo = dim + 3;
          std::vector<float> p(static_cast<std::size_t>(heads * ldp));
          for (float& v : p)
            v = u(rng);  // probabilities: non-negative
          const std::vector<float> v = random_values(static_cast<std::size_t>(length * ldv), rng);
          std::vector<float> out(static_cast<std::size_t>(heads * ldo), kPoison);
          weighted_rows_sum(p.data(), ldp, heads, v.data(), ldv, length, dim, out.data(), ldo);
          for (std::int64_t h = 0; h < heads; ++h)
            for (std::int64_t d = 0; d < ldo; ++d) {
              const float got = out[static_cast<std::size_t>(h * ldo + d)];
              if (d >= dim) {
                ASSERT_TRUE(std::isnan(got)) << "written past the dims: " << h << ", " << d;
                continue;
              }
              double want = 0.0, mag = 0.0;
              for (std::int64_t t = 0; t < length; ++t) {
                const double term = static_cast<double>(p[static_cast<std::size_t>(h * ldp + t)]) *
                                    v[static_cast<std::size_t>(t * ldv + d)];
                want += term;
                mag += std::abs(term);
              }
              ASSERT_NEAR(got, want, tolerance(length, mag))
                  << heads << " heads, dim " << dim << ", length " << length << ", element " << h
                  << ", " << d;
            }
        }
  });
}

TEST(DecodeKernels, WeightedRowsSumBitsDoNotDependOnTheHeadsBeside) {
  std::mt19937 rng(53);
  const std::int64_t heads = 7, dim = 72, length = 129;
  const std::vector<float> p = random_values(static_cast<std::size_t>(heads * length), rng);
  const std::vector<float> v = random_values(static_cast<std::size_t>(length * dim), rng);
  test::for_each_model_isa_path([&] {
    std::vector<float> together(static_cast<std::size_t>(heads * dim), kPoison);
    weighted_rows_sum(p.data(), length, heads, v.data(), dim, length, dim, together.data(), dim);
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<float> alone(static_cast<std::size_t>(dim), kPoison);
      weighted_rows_sum(p.data() + h * length, length, 1, v.data(), dim, length, dim, alone.data(),
                        dim);
      EXPECT_EQ(std::memcmp(alone.data(), together.data() + h * dim, alone.size() * 4), 0)
          << "head " << h;
    }
  });
}

// AVX2 computes AVX-512's lanes as halves with the same fused operations: the same bits.
TEST(DecodeKernels, Avx2GivesAvx512sBits) {
  if (core::best_cpu_isa() < core::Isa::avx512) GTEST_SKIP() << "this CPU has no AVX-512";
  std::mt19937 rng(59);
  const std::int64_t rows = 37, cols = 203, batch = 5, heads = 5, dim = 83, length = 61;
  const std::vector<float> w = random_values(static_cast<std::size_t>(rows * cols), rng);
  const std::vector<float> x = random_values(static_cast<std::size_t>(batch * cols), rng);
  const std::vector<float> bias = random_values(static_cast<std::size_t>(rows), rng);
  const std::vector<float> p = random_values(static_cast<std::size_t>(heads * length), rng);
  const std::vector<float> v = random_values(static_cast<std::size_t>(length * dim), rng);
  std::vector<std::vector<float>> products, sums;
  for (const char* isa : {"avx2", "avx512"}) {
    const test::EnvOverride guard("ANCHORCTX_ISA", isa);
    products.emplace_back(static_cast<std::size_t>(batch * rows), kPoison);
    batched_matvec(w.data(), cols, bias.data(), rows, cols, x.data(), cols, batch,
                   products.back().data(), rows);
    sums.emplace_back(static_cast<std::size_t>(heads * dim), kPoison);
    weighted_rows_sum(p.data(), length, heads, v.data(), dim, length, dim, sums.back().data(), dim);
  }
  EXPECT_EQ(std::memcmp(products[0].data(), products[1].data(), products[0].size() * 4), 0);
  EXPECT_EQ(std::memcmp(sums[0].data(), sums[1].data(), sums[0].size() * 4), 0);
}

}  // namespace
}  // namespace anchorctx::model::detail
