// The native bf16 GEMM path (--bf16-compute native: oneDNN on AVX512_BF16) against the emulated
// reference (float32 sgemm on bf16 values) on the same inputs: layer outputs and gradients, the
// LM head, thread invariance and a short training run. Skipped, saying why, where the native
// path is unavailable (no oneDNN in the build, or no AVX512_BF16 on the CPU).
//
// The tolerance argument. Both paths multiply the same bf16 operands (native rounds its float32
// inputs to bf16; fed bf16 values, the rounding is exact) and sum the exact products in float32,
// in different orders. Per output element with scale s = sum_k |a_k||b_k|, each float32 sum of
// K terms is within (K - 1) u s of the exact sum (u = 2^-24), so the two are within
// 2 (K - 1) u s of each other: that is the bound on unrounded outputs. An output rounded to
// bf16 (as the layers round) may then land on neighbouring bf16 values when the exact sum lies
// near a rounding boundary: one bf16 ulp, at most 2^-7 |y|. Operands that are not bf16 values
// (float32 inputs) each move by up to 2^-9 relative when native rounds them, so a product moves by
// up to about 2^-8 of |a||b|: native is within 2^-8 s (+ the float32 bound) of float32 math.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/train/optimizer.h"
#include "model/layers/gemm.h"

namespace anchorctx::model {
namespace {

constexpr double kU32 = 1.0 / (1 << 24);  // float32 unit roundoff
constexpr double kBf16Ulp = 1.0 / 128;    // one bf16 ulp, relative (8 significant bits)
constexpr double kBf16Rounding = 1.0 / 256;

std::size_t sz(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

std::vector<float> poisoned(std::int64_t n) {
  return std::vector<float>(sz(n), std::numeric_limits<float>::quiet_NaN());
}

// A linear layer's sizes. Named members, not a structured binding: clang 14 (the sanitizer
// build) cannot capture a binding in a lambda.
struct LinearShape {
  std::int64_t tokens, in, out;
};

class NativeBf16 : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!native_bf16_available(&why)) GTEST_SKIP() << "native bf16 unavailable here: " << why;
  }
  // Normal values, rounded to bf16 when `bf16` (the layers' operands in bf16 precision).
  std::vector<float> randn(std::int64_t n, bool bf16 = true) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(sz(n));
    for (float& x : v)
      x = bf16 ? core::round_to_bf16(dist(rng_)) : dist(rng_);
    return v;
  }
  std::mt19937_64 rng_{20261202};
};

// Per-element scales s[i, j] = sum_k |A[i, k]| |B[k, j]| of C = A B, A [m, k] and B [k, n]
// given by accessors (so transposed storage reads the same).
template <typename FA, typename FB>
std::vector<double> abs_scales(std::int64_t m, std::int64_t n, std::int64_t k, FA a, FB b) {
  std::vector<double> s(sz(m * n), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (std::int64_t p = 0; p < k; ++p)
        acc += std::abs(static_cast<double>(a(i, p))) * std::abs(static_cast<double>(b(p, j)));
      s[sz(i * n + j)] = acc;
    }
  return s;
}

// |got - ref| <= rel_scale * scale + rel_value * |ref| everywhere, all finite.
testing::AssertionResult within(const std::vector<float>& got, const std::vector<float>& ref,
                                const std::vector<double>& scale, double rel_scale,
                                double rel_value = 0.0) {
  if (got.size() != ref.size()) return testing::AssertionFailure() << "sizes differ";
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    const double tol = rel_scale * scale[i] + rel_value * std::abs(static_cast<double>(ref[i]));
    if (!std::isfinite(got[i]) || !(d <= tol))
      return testing::AssertionFailure() << "element " << i << ": " << got[i] << " vs " << ref[i]
                                         << " (tolerance " << tol << ")";
  }
  return testing::AssertionSuccess();
}

TEST(Bf16Compute, NamesRoundTripAndUnknownIsRejected) {
  EXPECT_EQ(parse_bf16_compute("native"), Bf16Compute::native);
  EXPECT_EQ(parse_bf16_compute("emulated"), Bf16Compute::emulated);
  EXPECT_EQ(parse_bf16_compute("bf16"), std::nullopt);
  EXPECT_EQ(to_string(Bf16Compute::native), "native");
  EXPECT_EQ(to_string(Bf16Compute::emulated), "emulated");
  EXPECT_EQ(default_bf16_compute() == Bf16Compute::native, native_bf16_available());
}

TEST(Bf16Compute, IsaOverrideTurnsNativeOffAndTheModelRefusesIt) {
  // The instruction-set override keeps the emulated fallback testable on a bf16 CPU.
  const char* previous = std::getenv("ANCHORCTX_ISA");
  const std::string saved = previous ? previous : "";
  setenv("ANCHORCTX_ISA", "avx2", 1);
  std::string why;
  const bool available = native_bf16_available(&why);
  RunOptions run;
  run.precision = Precision::bf16;
  run.rope_mode = rope::RopeMode::hf_bf16;
  run.bf16_compute = Bf16Compute::native;
  bool refused = false;
  std::string message;
  try {
    LlamaTrainModel model(preset("tiny"), run);
  } catch (const Error& e) {
    refused = true;
    message = e.what();
  }
  if (previous)
    setenv("ANCHORCTX_ISA", saved.c_str(), 1);
  else
    unsetenv("ANCHORCTX_ISA");
  EXPECT_FALSE(available);
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(default_bf16_compute() == Bf16Compute::native, native_bf16_available());
  ASSERT_TRUE(refused);
  EXPECT_NE(message.find("native is unavailable"), std::string::npos) << message;
}

TEST_F(NativeBf16, LinearForwardMatchesEmulatedWithinFloat32SumOrder) {
  // Awkward sizes (no multiples of 16), with and without bias, unrounded and rounded.
  for (const LinearShape& shape : {LinearShape{300, 200, 67}, {1, 13, 5}, {129, 384, 130}}) {
    const std::int64_t tokens = shape.tokens, in = shape.in, out = shape.out;
    const auto x = randn(tokens * in), w = randn(out * in), bias = randn(out);
    auto scale = abs_scales(
        tokens, out, in, [&](auto i, auto p) { return x[sz(i * in + p)]; },
        [&](auto p, auto j) { return w[sz(j * in + p)]; });
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t o = 0; o < out; ++o)
        scale[sz(t * out + o)] += std::abs(bias[sz(o)]);
    const double sum_bound = 2.0 * static_cast<double>(in) * kU32;
    for (const bool with_bias : {false, true})
      for (const bool round : {false, true}) {
        SCOPED_TRACE(testing::Message() << tokens << "x" << in << "x" << out << " bias "
                                        << with_bias << " round " << round);
        const float* b = with_bias ? bias.data() : nullptr;
        auto emulated = poisoned(tokens * out), native = poisoned(tokens * out);
        linear_forward(x.data(), w.data(), b, tokens, in, out, round, emulated.data());
        linear_forward(x.data(), w.data(), b, tokens, in, out, round, native.data(),
                       Bf16Compute::native);
        EXPECT_TRUE(within(native, emulated, scale, sum_bound, round ? kBf16Ulp : 0.0));
        if (round) {
          for (const float v : native)
            ASSERT_EQ(v, core::round_to_bf16(v));
        }
      }
  }
}

TEST_F(NativeBf16, NativeRoundsFloat32OperandsToBf16) {
  // Float32 operands (not bf16 values): native multiplies their bf16 roundings, so it matches
  // float64 math on the rounded operands to float32 sum order, and the unrounded ones to about
  // 2^-8 of the scale -- and it really is further off the latter than float32 sum order allows.
  const std::int64_t tokens = 96, in = 250, out = 40;
  const auto x = randn(tokens * in, false), w = randn(out * in, false);
  auto native = poisoned(tokens * out);
  linear_forward(x.data(), w.data(), nullptr, tokens, in, out, false, native.data(),
                 Bf16Compute::native);
  std::vector<float> exact_rounded(sz(tokens * out)), exact_f32(sz(tokens * out));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t o = 0; o < out; ++o) {
      double r = 0.0, f = 0.0;
      for (std::int64_t i = 0; i < in; ++i) {
        const float a = x[sz(t * in + i)], b = w[sz(o * in + i)];
        r += static_cast<double>(core::round_to_bf16(a)) * core::round_to_bf16(b);
        f += static_cast<double>(a) * b;
      }
      exact_rounded[sz(t * out + o)] = static_cast<float>(r);
      exact_f32[sz(t * out + o)] = static_cast<float>(f);
    }
  const auto scale = abs_scales(
      tokens, out, in, [&](auto i, auto p) { return x[sz(i * in + p)]; },
      [&](auto p, auto j) { return w[sz(j * in + p)]; });
  const double sum_bound = 2.0 * static_cast<double>(in) * kU32;
  EXPECT_TRUE(within(native, exact_rounded, scale, sum_bound));
  EXPECT_TRUE(within(native, exact_f32, scale, kBf16Rounding + sum_bound));
  EXPECT_FALSE(within(native, exact_f32, scale, sum_bound));
}

TEST_F(NativeBf16, LinearBackwardMatchesEmulated) {
  const std::int64_t tokens = 300, in = 200, out = 67;
  const auto x = randn(tokens * in), w = randn(out * in), dy = randn(tokens * out);
  const auto dx_start = randn(tokens * in), dw_start = randn(out * in), db_start = randn(out);
  auto dx_scale = abs_scales(
      tokens, in, out, [&](auto t, auto o) { return dy[sz(t * out + o)]; },
      [&](auto o, auto i) { return w[sz(o * in + i)]; });
  auto dw_scale = abs_scales(
      out, in, tokens, [&](auto o, auto t) { return dy[sz(t * out + o)]; },
      [&](auto t, auto i) { return x[sz(t * in + i)]; });
  // The accumulated starting values add to each sum.
  for (std::size_t i = 0; i < dw_scale.size(); ++i)
    dw_scale[i] += std::abs(dw_start[i]);
  for (const bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "dx accumulated" : "dx written");
    std::vector<double> dxs = dx_scale;
    if (accumulate)
      for (std::size_t i = 0; i < dxs.size(); ++i)
        dxs[i] += std::abs(dx_start[i]);
    auto dx_e = accumulate ? dx_start : poisoned(tokens * in), dx_n = dx_e;
    auto dw_e = dw_start, dw_n = dw_start, db_e = db_start, db_n = db_start;
    linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, accumulate, dx_e.data(),
                    dw_e.data(), db_e.data());
    linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, accumulate, dx_n.data(),
                    dw_n.data(), db_n.data(), Bf16Compute::native);
    EXPECT_TRUE(within(dx_n, dx_e, dxs, 2.0 * (out + 1) * kU32));
    EXPECT_TRUE(within(dw_n, dw_e, dw_scale, 2.0 * (tokens + 1) * kU32));
    EXPECT_EQ(db_n, db_e);  // the bias gradient is no GEMM: the same code, the same bits
  }
}

TEST_F(NativeBf16, LmHeadCrossEntropyMatchesEmulated) {
  const std::int64_t tokens = 70, hidden = 48, vocab = 517;
  const auto x = randn(tokens * hidden), w = randn(vocab * hidden);
  std::vector<std::int32_t> targets(sz(tokens));
  std::uniform_int_distribution<std::int32_t> pick(-1, static_cast<std::int32_t>(vocab - 1));
  for (auto& t : targets)
    t = pick(rng_);
  auto dx_e = poisoned(tokens * hidden), dx_n = dx_e;
  std::vector<float> dw_e(sz(vocab * hidden), 0.0f), dw_n = dw_e;
  auto logits_e = poisoned(tokens * vocab), logits_n = logits_e;
  // Chunks of 32 tokens: three calls per GEMM, the last one short.
  const LossSum e = lm_head_cross_entropy(x.data(), w.data(), targets, hidden, vocab, 32, true,
                                          1.0 / tokens, dx_e.data(), dw_e.data(), logits_e.data());
  const LossSum n =
      lm_head_cross_entropy(x.data(), w.data(), targets, hidden, vocab, 32, true, 1.0 / tokens,
                            dx_n.data(), dw_n.data(), logits_n.data(), Bf16Compute::native);
  ASSERT_EQ(n.tokens, e.tokens);
  const auto logit_scale = abs_scales(
      tokens, vocab, hidden, [&](auto t, auto i) { return x[sz(t * hidden + i)]; },
      [&](auto i, auto v) { return w[sz(v * hidden + i)]; });
  EXPECT_TRUE(within(logits_n, logits_e, logit_scale, 2.0 * hidden * kU32, kBf16Ulp));
  // A logit one bf16 ulp off moves the loss by at most that ulp (d loss / d logit is in [-1, 1]
  // per row): bound the summed loss by the summed logit tolerance of the targeted rows.
  double loss_tol = 0.0;
  for (std::int64_t t = 0; t < tokens; ++t)
    if (targets[sz(t)] >= 0) {
      double row = 0.0;
      for (std::int64_t v = 0; v < vocab; ++v)
        row = std::max(row, 2.0 * hidden * kU32 * logit_scale[sz(t * vocab + v)] +
                                kBf16Ulp * std::abs(logits_e[sz(t * vocab + v)]));
      loss_tol += 2.0 * row;
    }
  EXPECT_NEAR(n.loss, e.loss, loss_tol);
  EXPECT_NE(n.loss, 0.0);
  // Gradients: each dlogit moves by at most its bf16 rounding plus what the row's logits moved
  // (below); bounded relative to sum |dlogits| |W|, which a wrong operand, transpose or missing
  // accumulation exceeds by far.
  std::vector<float> dlogit_abs(sz(tokens * vocab), 0.0f);
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (targets[sz(t)] < 0) continue;
    double m = -1e300, s = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v)
      m = std::max(m, static_cast<double>(logits_e[sz(t * vocab + v)]));
    for (std::int64_t v = 0; v < vocab; ++v)
      s += std::exp(logits_e[sz(t * vocab + v)] - m);
    for (std::int64_t v = 0; v < vocab; ++v)
      dlogit_abs[sz(t * vocab + v)] = static_cast<float>(
          (std::exp(logits_e[sz(t * vocab + v)] - m) / s + (v == targets[sz(t)] ? 1.0 : 0.0)) /
          tokens);
  }
  const auto dx_scale = abs_scales(
      tokens, hidden, vocab, [&](auto t, auto v) { return dlogit_abs[sz(t * vocab + v)]; },
      [&](auto v, auto i) { return std::abs(w[sz(v * hidden + i)]); });
  const auto dw_scale = abs_scales(
      vocab, hidden, tokens, [&](auto v, auto t) { return dlogit_abs[sz(t * vocab + v)]; },
      [&](auto t, auto i) { return std::abs(x[sz(t * hidden + i)]); });
  // A logit that moved by d moves each probability of its row by a factor within exp(+-2d).
  double max_logit_diff = 0.0;
  for (std::size_t i = 0; i < logits_n.size(); ++i)
    max_logit_diff = std::max(max_logit_diff, std::abs(static_cast<double>(logits_n[i]) -
                                                       static_cast<double>(logits_e[i])));
  const double dlogit_rel = kBf16Ulp + std::expm1(2.0 * max_logit_diff);
  EXPECT_LT(dlogit_rel, 0.3);
  EXPECT_TRUE(within(dx_n, dx_e, dx_scale, dlogit_rel));
  EXPECT_TRUE(within(dw_n, dw_e, dw_scale, dlogit_rel));
}

TEST(Bf16Convert, VectorPathGivesTheScalarRoundingsBitsOnEveryKindOfValue) {
  // Ties (even and odd), values just off a tie, denormals, infinities, NaNs with payloads and
  // both signs, the largest float (rounds to infinity), random bit patterns; lengths that leave
  // every tail size; the AVX-512 path and the portable one (ANCHORCTX_ISA).
  std::vector<float> values;
  for (const std::uint32_t bits :
       {0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F807FFFu, 0x00000001u, 0x00008000u, 0x007FFFFFu,
        0x80018000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x7F800001u, 0xFFFFFFFFu, 0x7FA00000u,
        0x7F7FFFFFu, 0xFF7FFFFFu, 0x00000000u, 0x80000000u})
    values.push_back(std::bit_cast<float>(bits));
  std::mt19937 rng(11);
  for (int i = 0; i < 5000; ++i)
    values.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
  const char* previous = std::getenv("ANCHORCTX_ISA");
  const std::string saved = previous ? previous : "";
  for (const char* isa : {"avx512", "portable"}) {
    setenv("ANCHORCTX_ISA", isa, 1);
    for (const std::int64_t n :
         {std::int64_t{0}, std::int64_t{1}, std::int64_t{15}, std::int64_t{16}, std::int64_t{17},
          std::int64_t{31}, static_cast<std::int64_t>(values.size())}) {
      std::vector<std::uint16_t> got(sz(n) + 1, 0xABCD);
      detail::float_to_bf16(values.data(), n, got.data());
      for (std::int64_t i = 0; i < n; ++i)
        ASSERT_EQ(got[sz(i)], core::float_to_bf16_bits(values[sz(i)]))
            << isa << " n " << n << " value bits 0x" << std::hex
            << std::bit_cast<std::uint32_t>(values[sz(i)]);
      EXPECT_EQ(got[sz(n)], 0xABCD) << "wrote past the end, " << isa << " n " << n;
    }
    // Rows with a leading dimension: the gaps are neither read into the output nor written.
    const std::int64_t rows = 37, cols = 45, ld = 50;
    std::vector<std::uint16_t> packed(sz(rows * cols));
    detail::float_to_bf16_rows(values.data(), rows, cols, ld, packed.data(), cols);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < cols; ++c)
        ASSERT_EQ(packed[sz(r * cols + c)], core::float_to_bf16_bits(values[sz(r * ld + c)]));
  }
  if (previous)
    setenv("ANCHORCTX_ISA", saved.c_str(), 1);
  else
    unsetenv("ANCHORCTX_ISA");
}

TEST_F(NativeBf16, OperandsGivenAsBitsGiveTheSameResultsAsConvertingPerGemm) {
  // The model converts a weight or an activation once and hands the bits to every GEMM that
  // reads it (Bf16Bits); that must change nothing but the work.
  const std::int64_t tokens = 130, in = 72, out = 40;
  const auto x = randn(tokens * in), w = randn(out * in), dy = randn(tokens * out);
  std::vector<std::uint16_t> x16(sz(tokens * in)), w16(sz(out * in)), dy16(sz(tokens * out));
  detail::float_to_bf16(x.data(), tokens * in, x16.data());
  detail::float_to_bf16(w.data(), out * in, w16.data());
  detail::float_to_bf16(dy.data(), tokens * out, dy16.data());
  const auto run = [&](const Bf16Bits& bits) {
    std::vector<float> y = poisoned(tokens * out), dx = poisoned(tokens * in);
    std::vector<float> dw(sz(out * in), 0.25f);
    linear_forward(x.data(), w.data(), nullptr, tokens, in, out, true, y.data(),
                   Bf16Compute::native, bits);
    linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, false, dx.data(), dw.data(),
                    nullptr, Bf16Compute::native, bits);
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dw.begin(), dw.end());
    return y;
  };
  const auto converted = run({}), given = run({x16.data(), w16.data(), dy16.data()});
  ASSERT_EQ(converted.size(), given.size());
  EXPECT_EQ(0, std::memcmp(converted.data(), given.data(), given.size() * sizeof(float)));
  for (const float v : given)
    ASSERT_TRUE(std::isfinite(v));
  // The LM head with its weight's bits against converting per call.
  const std::int64_t vocab = 97;
  const auto wl = randn(vocab * in);
  std::vector<std::uint16_t> wl16(sz(vocab * in));
  detail::float_to_bf16(wl.data(), vocab * in, wl16.data());
  std::vector<std::int32_t> targets(sz(tokens));
  for (std::int64_t t = 0; t < tokens; ++t)
    targets[sz(t)] = t % 5 == 0 ? -1 : static_cast<std::int32_t>((t * 7) % vocab);
  const auto head = [&](const std::uint16_t* bits) {
    std::vector<float> dx = poisoned(tokens * in), dw(sz(vocab * in), 0.0f);
    const LossSum l =
        lm_head_cross_entropy(x.data(), wl.data(), targets, in, vocab, 48, true, 0.01, dx.data(),
                              dw.data(), nullptr, Bf16Compute::native, bits);
    dx.insert(dx.end(), dw.begin(), dw.end());
    dx.push_back(static_cast<float>(l.loss));
    return dx;
  };
  const auto head_converted = head(nullptr), head_given = head(wl16.data());
  EXPECT_EQ(
      0, std::memcmp(head_converted.data(), head_given.data(), head_given.size() * sizeof(float)));
}

TEST_F(NativeBf16, ThreadInvariantGemmsGiveTheSameBitsAtOneAndTwoThreads) {
  set_thread_invariant_gemms(true);
  struct Restore {
    int threads = omp_get_max_threads();
    ~Restore() {
      set_thread_invariant_gemms(false);
      omp_set_num_threads(threads);
    }
  } restore;
  // Rows split (tokens >= out) and columns split (out > tokens), each in several blocks.
  for (const LinearShape& shape : {LinearShape{700, 96, 130}, {90, 72, 600}}) {
    const std::int64_t tokens = shape.tokens, in = shape.in, out = shape.out;
    const auto x = randn(tokens * in), w = randn(out * in), dy = randn(tokens * out);
    const auto run = [&](int threads) {
      omp_set_num_threads(threads);
      std::vector<float> r = poisoned(tokens * out), dx = poisoned(tokens * in);
      std::vector<float> dw(sz(out * in), 0.5f);
      linear_forward(x.data(), w.data(), nullptr, tokens, in, out, false, r.data(),
                     Bf16Compute::native);
      linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, false, dx.data(), dw.data(),
                      nullptr, Bf16Compute::native);
      r.insert(r.end(), dx.begin(), dx.end());
      r.insert(r.end(), dw.begin(), dw.end());
      return r;
    };
    const auto one = run(1), two = run(2);
    ASSERT_EQ(one.size(), two.size());
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
        << tokens << "x" << in << "x" << out;
  }
}

// A short training run of the tiny preset on a learnable sequence at `threads` threads.
// perturb: a seed for moving every weight by one float32 ulp up or down at random before every
// step (0: none), a perturbation that changes which way some bf16 roundings go at every step, as
// native's other sum order does.
std::vector<double> train_losses(Bf16Compute compute, int steps, int threads,
                                 unsigned perturb = 0) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  const LlamaConfig config = preset("tiny");
  RunOptions run;
  run.precision = Precision::bf16;
  run.rope_mode = rope::RopeMode::hf_bf16;
  run.bf16_compute = compute;
  LlamaTrainModel model(config, run);
  init_parameters(model.layout(), config, 7, model.params());
  std::mt19937 flip(perturb);
  const auto nudge = [&] {
    if (perturb == 0) return;
    for (float& p : model.params())
      p = std::nextafter(p, flip() % 2 ? std::numeric_limits<float>::infinity()
                                       : -std::numeric_limits<float>::infinity());
  };
  nudge();
  train::AdamW optimizer(model.layout(), {});
  const std::int32_t T = 256;
  std::vector<std::int32_t> ids(sz(T)), targets(sz(T)), positions(sz(T));
  std::mt19937 rng(3);
  // A cycle of 24 byte values with one random token in eight: learnable, not trivial.
  for (std::int32_t t = 0; t < T; ++t) {
    ids[sz(t)] = rng() % 8 == 0 ? static_cast<std::int32_t>(rng() % 256) : 97 + (t * 5) % 24;
    positions[sz(t)] = t;
  }
  for (std::int32_t t = 0; t < T; ++t)
    targets[sz(t)] = t + 1 < T ? ids[sz(t + 1)] : -1;
  const auto layout = attention::AttentionLayout::from_document_lengths(
      std::vector<std::vector<std::int32_t>>{{T}}, 0);
  const attention::BlockPlan plan =
      attention::BlockPlan::build(layout, attention::MaskKind::causal);
  const TrainBatch batch{ids, targets, positions, &plan};
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    model.zero_grads();
    const LossSum l = model.forward_backward(batch, 1.0 / (T - 1));
    losses.push_back(l.loss / static_cast<double>(l.tokens));
    optimizer.step(model.params(), model.grads(), 1e-3);
    nudge();
  }
  omp_set_num_threads(previous);
  return losses;
}

TEST_F(NativeBf16, ThirtyTrainingStepsFollowTheEmulatedLossesWithinNoise) {
  // The noise: an emulated run whose weights move by one float32 ulp before every step, i.e. a
  // perturbation of the kind native makes (some bf16 roundings go the other way, every step). Two
  // emulated runs that differ only in OpenBLAS's thread count are no measure: on some CPUs they
  // agree to the bit.
  const int steps = 30;
  const auto emulated = train_losses(Bf16Compute::emulated, steps, 2);
  const auto perturbed = train_losses(Bf16Compute::emulated, steps, 2, 5);
  const auto native = train_losses(Bf16Compute::native, steps, 2);
  // Mean |difference| over the steps: a loss spike (this run has one at step 7) amplifies any
  // perturbation at that step alone, so the largest single difference measures chaos, not bias.
  double noise = 0.0, gap = 0.0, mean_loss = 0.0;
  for (int s = 0; s < steps; ++s) {
    const std::size_t i = sz(s);
    std::printf("step %2d: emulated %.5f, emulated (perturbed) %.5f, native %.5f\n", s, emulated[i],
                perturbed[i], native[i]);
    noise += std::abs(perturbed[i] - emulated[i]) / steps;
    gap += std::abs(native[i] - emulated[i]) / steps;
    mean_loss += emulated[i] / steps;
  }
  std::printf("mean |difference| from the emulated run: perturbed %.5f, native %.5f\n", noise, gap);
  // The first step sees the same weights: only the sum order differs.
  EXPECT_NEAR(native[0], emulated[0], 1e-3 * emulated[0]);
  EXPECT_LT(emulated.back(), 0.8 * emulated.front());  // the run learns something
  // Within noise: native no further from the emulated run, on average, than 3x the perturbed
  // run is, plus 0.5% of the loss (native also rounds P and dS to bf16 in the attention, a small
  // systematic difference); and the same final loss within 1%.
  EXPECT_LE(gap, 3.0 * noise + 5e-3 * mean_loss);
  EXPECT_NEAR(native.back(), emulated.back(), 1e-2 * emulated.back());
}

}  // namespace
}  // namespace anchorctx::model
