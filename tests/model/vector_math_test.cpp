// The layers' vector exp loops (src/model/layers/vector_math.h) against float64 math, on both
// paths: AVX-512 where this CPU has it, and the scalar loops (ANCHORCTX_ISA=portable or avx2).
#include "model/layers/vector_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/isa.h"
#include "support/model_isa_paths.h"

namespace anchorctx::model::detail {
namespace {

// Distance in float32 ulps between got and the float64 value want (rounded to float32).
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  if (got == w) return 0.0;
  const float step = std::nextafter(w, std::numeric_limits<float>::infinity()) - w;
  return std::abs(static_cast<double>(got) - want) / static_cast<double>(step);
}

TEST(VectorMath, ExpIsWithinTwoUlpsEverywhereAndKeepsSpecialValues) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> wide(-110.0f, 95.0f), narrow(-1.0f, 1.0f);
  std::vector<float> x;
  for (int i = 0; i < 20000; ++i)
    x.push_back(i % 2 ? wide(rng) : narrow(rng));
  const float inf = std::numeric_limits<float>::infinity();
  for (const float v : {0.0f, -0.0f, 88.7f, 88.8f, -87.3f, -103.9f, -150.0f, inf, -inf})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  test::for_each_model_isa_path([&] {
    std::vector<float> e(x.size(), -1.0f);
    exp_shifted_sum(x.data(), n, 0.0f, e.data());
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x[i]));
      if (std::isnan(x[i])) {
        EXPECT_TRUE(std::isnan(e[i]));
      } else if (want > std::numeric_limits<float>::max()) {
        EXPECT_EQ(e[i], inf) << x[i];
      } else if (want < std::numeric_limits<float>::min()) {
        // Denormal or zero results: within two of the smallest denormal.
        EXPECT_LE(std::abs(e[i] - want), 2.0 * std::numeric_limits<float>::denorm_min()) << x[i];
      } else {
        worst = std::max(worst, ulps(e[i], want));
        EXPECT_LE(ulps(e[i], want), 2.0) << x[i];
      }
    }
    std::printf("largest error of exp: %.2f ulps\n", worst);
  });
}

TEST(VectorMath, MaxAndShiftedSumsOnEveryTailLength) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 4.0f);
  test::for_each_model_isa_path([&] {
    for (int n = 1; n <= 40; ++n) {
      std::vector<float> x(static_cast<std::size_t>(n));
      for (float& v : x)
        v = d(rng);
      if (n > 3) x[2] = std::numeric_limits<float>::quiet_NaN();  // skipped by the max
      float want_max = -std::numeric_limits<float>::infinity();
      for (const float v : x)
        if (v > want_max) want_max = v;
      EXPECT_EQ(max_of(x.data(), n), want_max) << n;
      if (n > 3) x[2] = 0.0f;
      double want_sum = 0.0;
      for (const float v : x)
        want_sum += std::exp(static_cast<double>(v) - want_max);
      std::vector<float> out(x.size() + 1, 7.0f);  // one past the end must stay untouched
      const double sum = exp_shifted_sum(x.data(), n, want_max, out.data());
      EXPECT_NEAR(sum, want_sum, 4e-7 * want_sum) << n;
      EXPECT_NEAR(exp_shifted_sum(x.data(), n, want_max, nullptr), sum, 1e-12 * sum) << n;
      EXPECT_EQ(out.back(), 7.0f) << n;
    }
  });
}

TEST(VectorMath, SwigluRangesMatchFloat64) {
  std::mt19937 rng(5);
  std::normal_distribution<float> d(0.0f, 3.0f);
  const std::int64_t n = 1003;  // a tail of 11
  std::vector<float> g(n), u(n), dh(n);
  for (std::int64_t i = 0; i < n; ++i) {
    g[i] = d(rng);
    u[i] = d(rng);
    dh[i] = d(rng);
  }
  test::for_each_model_isa_path([&] {
    std::vector<float> h(n + 1, 7.0f), dg(n + 1, 7.0f), du(n + 1, 7.0f);
    swiglu_forward_range(g.data(), u.data(), n, false, h.data());
    swiglu_backward_range(g.data(), u.data(), dh.data(), n, dg.data(), du.data());
    for (std::int64_t i = 0; i < n; ++i) {
      const double gd = g[i], s = 1.0 / (1.0 + std::exp(-gd)), silu = gd * s;
      const double want_h = silu * u[i], want_du = dh[i] * silu;
      const double want_dg = dh[i] * u[i] * s * (1.0 + gd * (1.0 - s));
      EXPECT_NEAR(h[i], want_h, 1e-6 * (std::abs(silu * u[i]) + 1e-30)) << i;
      EXPECT_NEAR(du[i], want_du, 1e-6 * std::abs(dh[i] * silu) + 1e-30) << i;
      EXPECT_NEAR(dg[i], want_dg, 1e-6 * std::abs(dh[i] * u[i]) * (1.0 + std::abs(gd))) << i;
    }
    EXPECT_EQ(h[n], 7.0f);
    EXPECT_EQ(dg[n], 7.0f);
    EXPECT_EQ(du[n], 7.0f);
    // bf16: silu and the product each rounded to bf16, as on the scalar path.
    std::vector<float> hb(n);
    swiglu_forward_range(g.data(), u.data(), n, true, hb.data());
    for (std::int64_t i = 0; i < n; ++i) {
      const std::uint32_t bits = std::bit_cast<std::uint32_t>(hb[i]);
      EXPECT_EQ(bits & 0xFFFFu, 0u) << i;  // a bf16 value
      EXPECT_NEAR(hb[i], h[i], std::ldexp(std::abs(h[i]), -7) + 1e-30) << i;
    }
  });
}

TEST(VectorMath, RoundingAndAddsGiveTheScalarBits) {
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 10.0f);
  const std::int64_t n = 517;
  std::vector<float> a(n), b(n);
  for (std::int64_t i = 0; i < n; ++i) {
    a[i] = d(rng);
    b[i] = d(rng);
  }
  // Every kind of value: ties, denormals, infinities, NaN, the largest float (rounds to inf).
  const float specials[] = {1.00390625f,
                            1.01171875f,
                            std::numeric_limits<float>::denorm_min(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::max(),
                            -0.0f};
  for (std::size_t i = 0; i < std::size(specials); ++i)
    a[i] = specials[i];
  test::for_each_model_isa_path([&] {
    std::vector<float> r = a;
    round_bf16_range(r.data(), n);
    std::vector<float> s(n), sr(n);
    add_range(a.data(), b.data(), n, false, s.data());
    add_range(a.data(), b.data(), n, true, sr.data());
    for (std::int64_t i = 0; i < n; ++i) {
      EXPECT_EQ(std::bit_cast<std::uint32_t>(r[i]),
                std::bit_cast<std::uint32_t>(core::round_to_bf16(a[i])))
          << i;
      EXPECT_EQ(std::bit_cast<std::uint32_t>(s[i]), std::bit_cast<std::uint32_t>(a[i] + b[i])) << i;
      EXPECT_EQ(std::bit_cast<std::uint32_t>(sr[i]),
                std::bit_cast<std::uint32_t>(core::round_to_bf16(a[i] + b[i])))
          << i;
    }
  });
}

}  // namespace
}  // namespace anchorctx::model::detail
