// The training layers of model/layers.h against float64 references written out here, on fresh
// random inputs each run: the seed is printed and is in every failure message; replay a failure
// with ANCHORCTX_TEST_SEED=<seed>. Shapes are the awkward ones (tokens 1, 7, 129, 300 -- never a
// multiple of kReduceBlock; hidden 1, 5, 64; vocab 3, 37, 1000) and every output is poisoned
// with NaN before each call, so an element a layer forgets to write fails the comparison.
//
// Tolerances (all comparisons fail on NaN):
//   kTolF32 = 1e-5  float32 layer vs the float64 reference, relative to the tensor's scale: the
//                   largest |reference| element, or where a reduction may cancel, the largest
//                   sum of |terms| (the float32 rounding error is bounded by u * sum |terms|);
//   kTolFd  = 1e-3  float64 analytic gradient vs central differences (h = 1e-3) of the float64
//                   REFERENCE forward, relative to the gradient's largest element. The float32
//                   backward is compared with the float64 analytic gradient, never with finite
//                   differences of float32 (those would be noise).
//   bf16 outputs are checked bit for bit against the formula of the header, built from values
//   the layer returned through its float32 path (which is itself checked against float64).
#include "anchorctx/model/layers.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "attention/test_support.h"

namespace anchorctx::model {
namespace {

using test_support::random_floats;
using test_support::to_double;

constexpr double kTolF32 = 1e-5;
constexpr double kTolFd = 1e-3;
constexpr double kFdStep = 1e-3;
constexpr double kEps = 1e-5;  // RMSNorm epsilon (Llama's)
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

const std::int64_t kTokens[] = {1, 7, 129, 300};
const std::int64_t kHidden[] = {1, 5, 64};
const std::int64_t kVocab[] = {3, 37, 1000};

// ---- helpers ----

// A fresh seed per test (printed; replayed from ANCHORCTX_TEST_SEED) and a trace that puts it in
// every failure message.
class Layers : public testing::Test {
 protected:
  void SetUp() override {
    seed_ = test_support::test_seed();
    std::printf("[   seed   ] ANCHORCTX_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed_));
    trace_.emplace(__FILE__, __LINE__, "ANCHORCTX_TEST_SEED=" + std::to_string(seed_));
    rng_.seed(seed_);
  }
  void TearDown() override { trace_.reset(); }

  std::vector<float> randn(std::size_t n, float stddev = 1.0f) {
    return random_floats(rng_, n, stddev);
  }
  std::vector<std::int32_t> random_ids(std::size_t n, std::int64_t vocab) {
    std::uniform_int_distribution<std::int32_t> dist(0, static_cast<std::int32_t>(vocab - 1));
    std::vector<std::int32_t> ids(n);
    for (auto& id : ids)
      id = dist(rng_);
    return ids;
  }

  std::uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::optional<testing::ScopedTrace> trace_;
};

std::vector<float> poisoned(std::size_t n) {
  return std::vector<float>(n, kNaN);
}

std::size_t sz(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

double max_abs(std::span<const double> v) {
  double m = 0.0;
  for (double x : v)
    m = std::max(m, std::fabs(x));
  return m;
}

std::vector<double> abs_of(std::span<const double> v) {
  std::vector<double> a(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    a[i] = std::fabs(v[i]);
  return a;
}

bool is_bf16_value(float v) {
  return (std::bit_cast<std::uint32_t>(v) & 0xFFFFu) == 0;
}

// Every |got - ref| <= tol * scale, scale = max(max |ref|, floor). A NaN in `got` fails.
testing::AssertionResult close(std::span<const double> got, std::span<const double> ref, double tol,
                               double floor = 0.0) {
  if (got.size() != ref.size())
    return testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  const double scale = std::max(max_abs(ref), floor);
  const double bound = tol * scale;
  std::size_t bad = 0, first = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(got[i] - ref[i]);
    if (!(err <= bound)) {
      if (bad++ == 0) first = i;
      worst = std::isnan(err) ? err : std::max(worst, err);
    }
  }
  if (bad == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << bad << " of " << ref.size() << " elements off; first [" << first << "] got "
         << got[first] << " want " << ref[first] << "; worst error " << worst << " > " << bound
         << " (tol " << tol << " x scale " << scale << ")";
}
testing::AssertionResult close(std::span<const float> got, std::span<const double> ref, double tol,
                               double floor = 0.0) {
  return close(std::span<const double>(to_double(got)), ref, tol, floor);
}

bool bits_equal(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  return true;
}

// ---- float64 references ----

// C [M, N] = op(A) op(B), each element summed over p in order: A is [M, K] ([K, M] when
// a_transposed), B is [K, N] ([N, K] when b_transposed).
std::vector<double> matmul(std::span<const double> a, std::span<const double> b, std::int64_t m,
                           std::int64_t n, std::int64_t k, bool a_transposed, bool b_transposed) {
  std::vector<double> c(sz(m * n), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (std::int64_t p = 0; p < k; ++p)
        s += a[sz(a_transposed ? p * m + i : i * k + p)] *
             b[sz(b_transposed ? j * k + p : p * n + j)];
      c[sz(i * n + j)] = s;
    }
  return c;
}
// C = A [M, K] B^T, B [N, K]
std::vector<double> matmul_nt(std::span<const double> a, std::span<const double> b, std::int64_t m,
                              std::int64_t n, std::int64_t k) {
  return matmul(a, b, m, n, k, false, true);
}
// C = A [M, K] B, B [K, N]
std::vector<double> matmul_nn(std::span<const double> a, std::span<const double> b, std::int64_t m,
                              std::int64_t n, std::int64_t k) {
  return matmul(a, b, m, n, k, false, false);
}
// C = A^T B, A [K, M], B [K, N]
std::vector<double> matmul_tn(std::span<const double> a, std::span<const double> b, std::int64_t m,
                              std::int64_t n, std::int64_t k) {
  return matmul(a, b, m, n, k, true, false);
}

// RMSNorm of one row in float64: out = w * x / sqrt(mean(x^2) + eps).
double rms_rstd(const double* x, std::int64_t h, double eps) {
  double ss = 0.0;
  for (std::int64_t i = 0; i < h; ++i)
    ss += x[i] * x[i];
  return 1.0 / std::sqrt(ss / static_cast<double>(h) + eps);
}
// sum_i dout_i * out_i over the rows: the scalar the finite differences differentiate.
double rms_loss(std::span<const double> x, std::span<const double> w, std::span<const double> g,
                std::int64_t t0, std::int64_t t1, std::int64_t h, double eps) {
  double l = 0.0;
  for (std::int64_t t = t0; t < t1; ++t) {
    const double r = rms_rstd(x.data() + t * h, h, eps);
    for (std::int64_t i = 0; i < h; ++i)
      l += g[sz(t * h + i)] * w[sz(i)] * x[sz(t * h + i)] * r;
  }
  return l;
}

// The analytic gradient, by the chain rule on y_i = w_i x_i r, dr/dx_j = -r^3 x_j / H:
//   dx_j = r g_j w_j - r^3 x_j / H * sum_i g_i w_i x_i,   dw_i = sum_t g_i x_i r.
// dx_abs / dw_abs: the same sums over |terms| (the scale float32 cancellation errors live on).
struct RmsGrad {
  std::vector<double> dx, dw, dx_abs, dw_abs;
};
RmsGrad rms_grad(std::span<const double> x, std::span<const double> w, std::span<const double> g,
                 std::int64_t tokens, std::int64_t h, double eps) {
  RmsGrad r{std::vector<double>(x.size()), std::vector<double>(sz(h), 0.0),
            std::vector<double>(x.size()), std::vector<double>(sz(h), 0.0)};
  for (std::int64_t t = 0; t < tokens; ++t) {
    const double* xr = x.data() + t * h;
    const double* gr = g.data() + t * h;
    const double rs = rms_rstd(xr, h, eps);
    double dot = 0.0, dot_abs = 0.0;
    for (std::int64_t i = 0; i < h; ++i) {
      dot += gr[i] * w[sz(i)] * xr[i];
      dot_abs += std::fabs(gr[i] * w[sz(i)] * xr[i]);
    }
    for (std::int64_t j = 0; j < h; ++j) {
      const double first = rs * gr[j] * w[sz(j)];
      const double second = rs * rs * rs * xr[j] / static_cast<double>(h);
      r.dx[sz(t * h + j)] = first - second * dot;
      r.dx_abs[sz(t * h + j)] = std::fabs(first) + std::fabs(second) * dot_abs;
      r.dw[sz(j)] += gr[j] * xr[j] * rs;
      r.dw_abs[sz(j)] += std::fabs(gr[j] * xr[j] * rs);
    }
  }
  return r;
}

double silu(double g) {
  return g / (1.0 + std::exp(-g));
}
double dsilu(double g) {
  const double s = 1.0 / (1.0 + std::exp(-g));
  return s + g * s * (1.0 - s);
}

// Cross-entropy over given logits [T, V] (float64): loss and dlogits = (softmax - onehot) * scale
// on targeted rows, 0 elsewhere.
struct CeRef {
  double loss = 0.0;
  std::int64_t tokens = 0;
  double loss_scale = 0.0;  // sum over targeted rows of max |logit| (the loss's error scale)
  std::vector<double> dlogits;
  // The error scale of each dlogit: its operands p_v and the one-hot 1 (p_t - 1 cancels when the
  // target is nearly certain, leaving float32's rounding of 1), and p_v's own error through
  // the logits (relative, about 2 max |logit| ulps).
  std::vector<double> dlogits_abs;
};
CeRef ce_from_logits(std::span<const double> logits, std::span<const double> logits_abs,
                     std::span<const std::int32_t> targets, std::int64_t vocab, double scale) {
  CeRef r;
  r.dlogits.assign(logits.size(), 0.0);
  r.dlogits_abs.assign(logits.size(), 0.0);
  for (std::size_t t = 0; t < targets.size(); ++t) {
    if (targets[t] < 0) continue;
    const double* l = logits.data() + t * sz(vocab);
    double m = l[0];
    for (std::int64_t v = 1; v < vocab; ++v)
      m = std::max(m, l[v]);
    double s = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v)
      s += std::exp(l[v] - m);
    const double lse = m + std::log(s);
    r.loss += lse - l[targets[t]];
    ++r.tokens;
    double la = 0.0;
    for (std::int64_t v = 0; v < vocab; ++v)
      la = std::max(la, logits_abs[t * sz(vocab) + sz(v)]);
    for (std::int64_t v = 0; v < vocab; ++v) {
      const double p = std::exp(l[v] - lse), y = v == targets[t] ? 1.0 : 0.0;
      r.dlogits[t * sz(vocab) + sz(v)] = (p - y) * scale;
      r.dlogits_abs[t * sz(vocab) + sz(v)] = (p * (1.0 + 2.0 * la) + y) * scale;
    }
    r.loss_scale += la;
  }
  return r;
}

// ---- bf16 helpers ----

TEST_F(Layers, Bf16HelpersRoundTripNanInfTies) {
  const float inf = std::numeric_limits<float>::infinity();
  const auto f = [](std::uint32_t bits) { return std::bit_cast<float>(bits); };
  // value -> expected bf16 bits
  const std::vector<std::pair<float, std::uint16_t>> cases = {
      {0.0f, 0x0000},           {-0.0f, 0x8000},
      {1.0f, 0x3F80},           {inf, 0x7F80},
      {-inf, 0xFF80},           {kNaN, 0x7FC0},
      {-kNaN, 0x7FC0},          {f(0x7F800001u), 0x7FC0},  // signalling NaN -> canonical quiet NaN
      {f(0x3F808000u), 0x3F80},  // tie between 0x3F80 (even) and 0x3F81: down
      {f(0x3F818000u), 0x3F82},  // tie between 0x3F81 (odd) and 0x3F82: up
      {f(0xBF818000u), 0xBF82},  // the same on negatives
      {f(0x3F808001u), 0x3F81},  // just above a tie: up
      {f(0x3F807FFFu), 0x3F80},  // just below: down
      {f(0x3FFF8000u), 0x4000},  // tie carrying into the exponent
      {f(0x7F7FFFFFu), 0x7F80},  // FLT_MAX rounds to inf
      {f(0x00000001u), 0x0000},  // smallest subnormal rounds to 0
      {f(0x00018000u), 0x0002},  // subnormal tie, odd -> up
  };
  std::vector<float> src;
  std::vector<std::uint16_t> want;
  for (const auto& [v, bits] : cases) {
    src.push_back(v);
    want.push_back(bits);
  }
  // Random floats of every magnitude, and enough elements (> 65536) to take the parallel path.
  std::uniform_int_distribution<std::uint32_t> any_bits;
  while (src.size() < 70001) {
    const float v = f(any_bits(rng_));
    src.push_back(v);
    want.push_back(core::float_to_bf16_bits(v));
  }
  std::vector<std::uint16_t> bits(src.size(), 0xDEAD);
  to_bf16_bits(src, bits);
  for (std::size_t i = 0; i < src.size(); ++i)
    ASSERT_EQ(bits[i], want[i]) << "element " << i << " bits 0x" << std::hex
                                << std::bit_cast<std::uint32_t>(src[i]);

  std::vector<float> back = poisoned(src.size());
  from_bf16_bits(bits, back);
  std::vector<float> rounded = src;
  round_to_bf16(rounded);
  for (std::size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(back[i]), std::uint32_t{bits[i]} << 16) << i;
    // round_to_bf16 in place == the round trip through the bits
    ASSERT_EQ(std::bit_cast<std::uint32_t>(rounded[i]), std::bit_cast<std::uint32_t>(back[i])) << i;
    if (std::isnan(src[i])) {
      ASSERT_TRUE(std::isnan(rounded[i]));
      continue;
    }
    // Nearest: within half a bf16 ulp of the input (float64 arithmetic, independent of the bit
    // trick), unless it overflowed to inf.
    if (std::isinf(rounded[i])) {
      // at or past the tie between the largest bf16, (2 - 2^-7) 2^127, and 2^128
      ASSERT_GE(std::fabs(static_cast<double>(src[i])), std::ldexp(2.0 - std::ldexp(1.0, -8), 127))
          << i;
      continue;
    }
    const int e = std::max(std::ilogb(rounded[i] == 0.0f ? src[i] : rounded[i]), -126);
    const double half_ulp = std::ldexp(1.0, e - 8);
    ASSERT_LE(std::fabs(static_cast<double>(src[i]) - rounded[i]), half_ulp * (1 + 1e-12)) << i;
  }

  // Every bf16 bit pattern survives bits -> float -> bits, NaNs as the canonical NaN.
  std::vector<std::uint16_t> all(65536 * 2);
  for (std::size_t i = 0; i < all.size(); ++i)
    all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> as_float = poisoned(all.size());
  from_bf16_bits(all, as_float);
  std::vector<std::uint16_t> again(all.size(), 0xDEAD);
  to_bf16_bits(as_float, again);
  for (std::size_t i = 0; i < all.size(); ++i) {
    const bool nan = (all[i] & 0x7FFF) > 0x7F80;
    ASSERT_EQ(again[i], nan ? 0x7FC0 : all[i]) << i;
  }
}

TEST_F(Layers, AddForwardAliasesAndRounds) {
  for (std::int64_t n : {1, 7, 300}) {
    const auto a = randn(sz(n)), b = randn(sz(n));
    std::vector<float> out = poisoned(sz(n));
    add_forward(a.data(), b.data(), n, false, out.data());
    std::vector<float> aliased = a;
    add_forward(aliased.data(), b.data(), n, true, aliased.data());
    for (std::size_t i = 0; i < sz(n); ++i) {
      EXPECT_EQ(out[i], a[i] + b[i]) << i;  // one float32 addition, exact to compare
      EXPECT_EQ(aliased[i], core::round_to_bf16(a[i] + b[i])) << i;
    }
  }
}

// ---- embedding ----

TEST_F(Layers, EmbeddingForwardGathersRows) {
  for (std::int64_t vocab : kVocab)
    for (std::int64_t hidden : {1, 5, 64, 130})
      for (std::int64_t tokens : kTokens) {
        SCOPED_TRACE(testing::Message() << "V " << vocab << " H " << hidden << " T " << tokens);
        const auto table = randn(sz(vocab * hidden));
        const auto ids = random_ids(sz(tokens), vocab);
        std::vector<float> out = poisoned(sz(tokens * hidden));
        embedding_forward(ids, table.data(), vocab, hidden, out.data());
        for (std::int64_t t = 0; t < tokens; ++t)
          for (std::int64_t i = 0; i < hidden; ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(out[sz(t * hidden + i)]),
                      std::bit_cast<std::uint32_t>(table[sz(ids[sz(t)] * hidden + i)]))
                << "t " << t << " i " << i;
      }
}

TEST_F(Layers, EmbeddingForwardRejectsBadIdsNamingThePosition) {
  const std::int64_t vocab = 37, hidden = 5;
  const auto table = randn(sz(vocab * hidden));
  for (std::int32_t bad : {-1, 37, 1000, std::numeric_limits<std::int32_t>::min()}) {
    auto ids = random_ids(7, vocab);
    ids[4] = bad;
    std::vector<float> out = poisoned(sz(7 * hidden));
    try {
      embedding_forward(ids, table.data(), vocab, hidden, out.data());
      ADD_FAILURE() << "id " << bad << " accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
    }
  }
}

TEST_F(Layers, EmbeddingBackwardAccumulatesRepeatedIds) {
  for (std::int64_t vocab : kVocab)
    for (std::int64_t hidden : {1, 5, 64, 130})
      for (std::int64_t tokens : kTokens) {
        SCOPED_TRACE(testing::Message() << "V " << vocab << " H " << hidden << " T " << tokens);
        auto ids = random_ids(sz(tokens), vocab);
        if (tokens > 2) ids[1] = ids[sz(tokens - 1)] = ids[0];  // repeats even in a large vocab
        const auto dout = randn(sz(tokens * hidden));
        const auto init = randn(sz(vocab * hidden));  // += onto what is there
        std::vector<float> dtable = init;
        embedding_backward(ids, dout.data(), hidden, dtable.data());

        std::vector<double> ref = to_double(init), ref_abs = abs_of(ref);
        std::vector<bool> touched(sz(vocab), false);
        for (std::int64_t t = 0; t < tokens; ++t) {
          touched[sz(ids[sz(t)])] = true;
          for (std::int64_t i = 0; i < hidden; ++i) {
            ref[sz(ids[sz(t)] * hidden + i)] += dout[sz(t * hidden + i)];
            ref_abs[sz(ids[sz(t)] * hidden + i)] += std::fabs(dout[sz(t * hidden + i)]);
          }
        }
        EXPECT_TRUE(close(dtable, ref, kTolF32, max_abs(ref_abs)));
        // Rows no token names are left bit for bit as they were.
        for (std::int64_t v = 0; v < vocab; ++v) {
          if (touched[sz(v)]) continue;
          for (std::int64_t i = 0; i < hidden; ++i)
            ASSERT_EQ(std::bit_cast<std::uint32_t>(dtable[sz(v * hidden + i)]),
                      std::bit_cast<std::uint32_t>(init[sz(v * hidden + i)]))
                << "row " << v;
        }
      }
}

// ---- RMSNorm ----

// Rows whose mean square is at least 0.1: keeps rstd (and the curvature the finite differences
// see) moderate, so h = 1e-3 is small against the function's scale even at hidden 1.
std::vector<float> rms_input(std::mt19937_64& rng, std::int64_t tokens, std::int64_t hidden) {
  std::vector<float> x(sz(tokens * hidden));
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (;;) {
      const auto row = random_floats(rng, sz(hidden));
      double ss = 0.0;
      for (float v : row)
        ss += static_cast<double>(v) * v;
      if (ss / static_cast<double>(hidden) < 0.1) continue;
      std::copy(row.begin(), row.end(), x.begin() + t * hidden);
      break;
    }
  }
  return x;
}

TEST_F(Layers, RmsNormForwardFp32MatchesFloat64) {
  for (std::int64_t hidden : kHidden)
    for (std::int64_t tokens : kTokens) {
      SCOPED_TRACE(testing::Message() << "H " << hidden << " T " << tokens);
      const auto x = randn(sz(tokens * hidden));
      const auto w = randn(sz(hidden));
      std::vector<float> out = poisoned(sz(tokens * hidden)), rstd = poisoned(sz(tokens));
      rmsnorm_forward(x.data(), w.data(), tokens, hidden, kEps, false, out.data(), rstd.data());
      const auto xd = to_double(x), wd = to_double(w);
      std::vector<double> ref_out(out.size()), ref_rstd(sz(tokens));
      for (std::int64_t t = 0; t < tokens; ++t) {
        ref_rstd[sz(t)] = rms_rstd(xd.data() + t * hidden, hidden, kEps);
        for (std::int64_t i = 0; i < hidden; ++i)
          ref_out[sz(t * hidden + i)] = wd[sz(i)] * xd[sz(t * hidden + i)] * ref_rstd[sz(t)];
      }
      EXPECT_TRUE(close(out, ref_out, kTolF32));
      // rstd per token, relative to itself (it is positive and has no cancellation).
      for (std::int64_t t = 0; t < tokens; ++t)
        EXPECT_NEAR(rstd[sz(t)], ref_rstd[sz(t)], kTolF32 * ref_rstd[sz(t)]) << "t " << t;
    }
}

TEST_F(Layers, RmsNormForwardBf16IsTheRoundedFormula) {
  for (std::int64_t hidden : kHidden)
    for (std::int64_t tokens : kTokens) {
      SCOPED_TRACE(testing::Message() << "H " << hidden << " T " << tokens);
      // A bf16 model's inputs and weight are bf16 values.
      const auto x = test_support::round_to_bf16(randn(sz(tokens * hidden)));
      const auto w = test_support::round_to_bf16(randn(sz(hidden)));
      std::vector<float> out = poisoned(x.size()), rstd = poisoned(sz(tokens));
      std::vector<float> out32 = poisoned(x.size()), rstd32 = poisoned(sz(tokens));
      rmsnorm_forward(x.data(), w.data(), tokens, hidden, kEps, true, out.data(), rstd.data());
      rmsnorm_forward(x.data(), w.data(), tokens, hidden, kEps, false, out32.data(), rstd32.data());
      // rstd is the float32 one in both modes (checked against float64 in the fp32 test, and
      // here: float32-accurate, i.e. computed in float32, not rounded to bf16).
      EXPECT_TRUE(bits_equal(rstd, rstd32));
      const auto xd = to_double(x);
      for (std::int64_t t = 0; t < tokens; ++t) {
        const double r = rms_rstd(xd.data() + t * hidden, hidden, kEps);
        ASSERT_NEAR(rstd[sz(t)], r, kTolF32 * r) << "t " << t;
      }
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t i = 0; i < hidden; ++i) {
          const std::size_t k = sz(t * hidden + i);
          const float n = core::round_to_bf16(x[k] * rstd[sz(t)]);
          const float want = core::round_to_bf16(w[sz(i)] * n);
          ASSERT_TRUE(is_bf16_value(out[k])) << "t " << t << " i " << i << ": " << out[k];
          ASSERT_EQ(std::bit_cast<std::uint32_t>(out[k]), std::bit_cast<std::uint32_t>(want))
              << "t " << t << " i " << i << ": " << out[k] << " want " << want;
        }
    }
}

TEST_F(Layers, RmsNormBackwardMatchesAnalyticAndFiniteDifferences) {
  for (std::int64_t hidden : kHidden)
    for (std::int64_t tokens : kTokens) {
      SCOPED_TRACE(testing::Message() << "H " << hidden << " T " << tokens);
      const auto x = rms_input(rng_, tokens, hidden);
      const auto w = randn(sz(hidden));
      const auto dout = randn(sz(tokens * hidden));
      std::vector<float> out = poisoned(x.size()), rstd = poisoned(sz(tokens));
      rmsnorm_forward(x.data(), w.data(), tokens, hidden, kEps, false, out.data(), rstd.data());

      const auto dw_init = randn(sz(hidden));
      std::vector<float> dx = poisoned(x.size()), dw = dw_init;
      rmsnorm_backward(x.data(), w.data(), rstd.data(), dout.data(), tokens, hidden, false,
                       dx.data(), dw.data());

      const auto xd = to_double(x), wd = to_double(w), gd = to_double(dout);
      const RmsGrad ref = rms_grad(xd, wd, gd, tokens, hidden, kEps);
      // float32 backward vs the float64 analytic gradient.
      EXPECT_TRUE(close(dx, ref.dx, kTolF32, max_abs(ref.dx_abs)));
      std::vector<double> dw_ref = to_double(dw_init), dw_floor = abs_of(dw_ref);
      for (std::int64_t i = 0; i < hidden; ++i) {
        dw_ref[sz(i)] += ref.dw[sz(i)];
        dw_floor[sz(i)] += ref.dw_abs[sz(i)];
      }
      EXPECT_TRUE(close(dw, dw_ref, kTolF32, max_abs(dw_floor)));

      // The float64 analytic gradient vs central differences of the float64 forward.
      std::vector<double> fd_dx(xd.size()), fd_dw(wd.size());
      std::vector<double> xp = xd, wp = wd;
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t i = 0; i < hidden; ++i) {
          double& v = xp[sz(t * hidden + i)];
          const double v0 = v;
          v = v0 + kFdStep;
          const double lp = rms_loss(xp, wd, gd, t, t + 1, hidden, kEps);
          v = v0 - kFdStep;
          const double lm = rms_loss(xp, wd, gd, t, t + 1, hidden, kEps);
          v = v0;
          fd_dx[sz(t * hidden + i)] = (lp - lm) / (2 * kFdStep);
        }
      for (std::int64_t i = 0; i < hidden; ++i) {
        const double v0 = wp[sz(i)];
        wp[sz(i)] = v0 + kFdStep;
        const double lp = rms_loss(xd, wp, gd, 0, tokens, hidden, kEps);
        wp[sz(i)] = v0 - kFdStep;
        const double lm = rms_loss(xd, wp, gd, 0, tokens, hidden, kEps);
        wp[sz(i)] = v0;
        fd_dw[sz(i)] = (lp - lm) / (2 * kFdStep);
      }
      EXPECT_TRUE(close(ref.dx, fd_dx, kTolFd));
      EXPECT_TRUE(close(ref.dw, fd_dw, kTolFd));

      // accumulate_dx adds onto what dx holds; dweight accumulates again.
      const auto dx_init = randn(x.size());
      std::vector<float> dx_acc = dx_init;
      rmsnorm_backward(x.data(), w.data(), rstd.data(), dout.data(), tokens, hidden, true,
                       dx_acc.data(), dw.data());
      std::vector<double> acc_ref = to_double(dx_init), acc_floor = abs_of(acc_ref);
      for (std::size_t k = 0; k < acc_ref.size(); ++k) {
        acc_ref[k] += ref.dx[k];
        acc_floor[k] += ref.dx_abs[k];
      }
      EXPECT_TRUE(close(dx_acc, acc_ref, kTolF32, max_abs(acc_floor)));
      for (std::int64_t i = 0; i < hidden; ++i) {
        dw_ref[sz(i)] += ref.dw[sz(i)];
        dw_floor[sz(i)] += ref.dw_abs[sz(i)];
      }
      EXPECT_TRUE(close(dw, dw_ref, kTolF32, max_abs(dw_floor)));
    }
}

// ---- linear ----

TEST_F(Layers, LinearForwardMatchesFloat64WithAndWithoutBias) {
  for (std::int64_t tokens : kTokens)
    for (std::int64_t in : kHidden)
      for (std::int64_t out : {1, 5, 37})
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(testing::Message() << "T " << tokens << " in " << in << " out " << out
                                          << " bias " << with_bias);
          const auto x = randn(sz(tokens * in));
          const auto w = randn(sz(out * in));
          const auto b = randn(sz(out));
          const float* bias = with_bias ? b.data() : nullptr;
          std::vector<float> y = poisoned(sz(tokens * out));
          linear_forward(x.data(), w.data(), bias, tokens, in, out, false, y.data());

          const auto xd = to_double(x), wd = to_double(w);
          auto ref = matmul_nt(xd, wd, tokens, out, in);
          auto ref_abs = matmul_nt(abs_of(xd), abs_of(wd), tokens, out, in);
          if (with_bias)
            for (std::int64_t t = 0; t < tokens; ++t)
              for (std::int64_t o = 0; o < out; ++o) {
                ref[sz(t * out + o)] += b[sz(o)];
                ref_abs[sz(t * out + o)] += std::fabs(b[sz(o)]);
              }
          EXPECT_TRUE(close(y, ref, kTolF32, max_abs(ref_abs)));

          // bf16: the same float32 result, rounded (bit for bit), each a bf16 value.
          std::vector<float> yb = poisoned(y.size());
          linear_forward(x.data(), w.data(), bias, tokens, in, out, true, yb.data());
          for (std::size_t k = 0; k < y.size(); ++k) {
            ASSERT_TRUE(is_bf16_value(yb[k])) << k;
            ASSERT_EQ(std::bit_cast<std::uint32_t>(yb[k]),
                      std::bit_cast<std::uint32_t>(core::round_to_bf16(y[k])))
                << k;
          }
        }
}

TEST_F(Layers, LinearBackwardWritesDxAccumulatesDwAndDbias) {
  for (std::int64_t tokens : kTokens)
    for (std::int64_t in : kHidden)
      for (std::int64_t out : {1, 5, 37}) {
        SCOPED_TRACE(testing::Message() << "T " << tokens << " in " << in << " out " << out);
        const auto x = randn(sz(tokens * in));
        const auto w = randn(sz(out * in));
        const auto dy = randn(sz(tokens * out));
        const auto xd = to_double(x), wd = to_double(w), dyd = to_double(dy);
        const auto dx_ref = matmul_nn(dyd, wd, tokens, in, out);
        const auto dx_abs = matmul_nn(abs_of(dyd), abs_of(wd), tokens, in, out);
        const auto dw_ref = matmul_tn(dyd, xd, out, in, tokens);
        const auto dw_abs = matmul_tn(abs_of(dyd), abs_of(xd), out, in, tokens);
        std::vector<double> db_ref(sz(out), 0.0), db_abs(sz(out), 0.0);
        for (std::int64_t t = 0; t < tokens; ++t)
          for (std::int64_t o = 0; o < out; ++o) {
            db_ref[sz(o)] += dyd[sz(t * out + o)];
            db_abs[sz(o)] += std::fabs(dyd[sz(t * out + o)]);
          }
        // init + k * delta, with the error scale of those sums.
        const auto plus = [](const std::vector<float>& init, const std::vector<double>& delta,
                             const std::vector<double>& delta_abs, int k) {
          std::pair<std::vector<double>, double> r{to_double(init), 0.0};
          for (std::size_t i = 0; i < delta.size(); ++i) {
            r.first[i] += k * delta[i];
            r.second = std::max(r.second, std::fabs(init[i]) + k * delta_abs[i]);
          }
          return r;
        };

        const auto dw_init = randn(sz(out * in)), db_init = randn(sz(out));
        std::vector<float> dw = dw_init, db = db_init, dx = poisoned(sz(tokens * in));
        linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, false, dx.data(), dw.data(),
                        db.data());
        EXPECT_TRUE(close(dx, dx_ref, kTolF32, max_abs(dx_abs)));  // written over the NaNs
        auto [dw1, dw1_floor] = plus(dw_init, dw_ref, dw_abs, 1);
        EXPECT_TRUE(close(dw, dw1, kTolF32, dw1_floor));
        auto [db1, db1_floor] = plus(db_init, db_ref, db_abs, 1);
        EXPECT_TRUE(close(db, db1, kTolF32, db1_floor));

        // accumulate_dx; dW and dbias accumulate a second time.
        const auto dx_init = randn(sz(tokens * in));
        std::vector<float> dx_acc = dx_init;
        linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, true, dx_acc.data(),
                        dw.data(), db.data());
        auto [dxa, dxa_floor] = plus(dx_init, dx_ref, dx_abs, 1);
        EXPECT_TRUE(close(dx_acc, dxa, kTolF32, dxa_floor));
        auto [dw2, dw2_floor] = plus(dw_init, dw_ref, dw_abs, 2);
        EXPECT_TRUE(close(dw, dw2, kTolF32, dw2_floor));
        auto [db2, db2_floor] = plus(db_init, db_ref, db_abs, 2);
        EXPECT_TRUE(close(db, db2, kTolF32, db2_floor));

        // dx null (not needed) and dbias null (no bias): dW alone.
        std::vector<float> dw_only = dw_init;
        linear_backward(x.data(), w.data(), dy.data(), tokens, in, out, false, nullptr,
                        dw_only.data(), nullptr);
        EXPECT_TRUE(close(dw_only, dw1, kTolF32, dw1_floor));
      }
}

// ---- SwiGLU ----

TEST_F(Layers, SwigluForwardBackwardMatchFloat64AndFiniteDifferences) {
  for (std::int64_t n : {1, 7, 129, 1500}) {
    SCOPED_TRACE(testing::Message() << "n " << n);
    auto gate = randn(sz(n), 3.0f);
    // The tails, where exp over/underflows in float32 (not alone in a tiny tensor, whose scale
    // they would set).
    const float extremes[] = {-100.0f, -89.0f, -30.0f, 20.0f, 100.0f};
    for (std::size_t k = 0; k < std::size(extremes) && sz(n) >= 7; ++k)
      gate[sz(n) - 1 - k] = extremes[k];
    const auto up = randn(sz(n)), dh = randn(sz(n));
    std::vector<float> h = poisoned(sz(n));
    swiglu_forward(gate.data(), up.data(), n, false, h.data());
    std::vector<double> h_ref(sz(n)), dg_ref(sz(n)), du_ref(sz(n)), fd_dg(sz(n)), fd_du(sz(n));
    // dsilu(g) = s + g s (1 - s) cancels near g = -1.28: float32 error follows the size of its
    // terms, not of the result, so that is the scale dgate is checked against.
    double dg_terms = 0.0;
    for (std::size_t i = 0; i < sz(n); ++i) {
      const double g = gate[i], u = up[i], d = dh[i];
      const double sg = 1.0 / (1.0 + std::exp(-g));
      dg_terms = std::max(dg_terms, std::abs(d * u) * (sg + std::abs(g) * sg * (1.0 - sg)));
      h_ref[i] = silu(g) * u;
      dg_ref[i] = d * u * dsilu(g);
      du_ref[i] = d * silu(g);
      fd_dg[i] = d * u * (silu(g + kFdStep) - silu(g - kFdStep)) / (2 * kFdStep);
      fd_du[i] = d * silu(g) * ((u + kFdStep) - (u - kFdStep)) / (2 * kFdStep);
    }
    EXPECT_TRUE(close(h, h_ref, kTolF32));

    std::vector<float> dg = poisoned(sz(n)), du = poisoned(sz(n));
    swiglu_backward(gate.data(), up.data(), dh.data(), n, dg.data(), du.data());
    EXPECT_TRUE(close(dg, dg_ref, kTolF32, dg_terms));
    EXPECT_TRUE(close(du, du_ref, kTolF32));
    EXPECT_TRUE(close(dg_ref, fd_dg, kTolFd));
    EXPECT_TRUE(close(du_ref, fd_du, kTolFd));

    // bf16: h = bf16(bf16(silu(gate)) * up). With up = 1 the layer gives bf16(silu) alone
    // (checked against float64 to half a bf16 ulp), then the product rounds bit for bit.
    const auto gb = test_support::round_to_bf16(gate), ub = test_support::round_to_bf16(up);
    std::vector<float> ones(sz(n), 1.0f), s = poisoned(sz(n)), hb = poisoned(sz(n));
    swiglu_forward(gb.data(), ones.data(), n, true, s.data());
    swiglu_forward(gb.data(), ub.data(), n, true, hb.data());
    for (std::size_t i = 0; i < sz(n); ++i) {
      const double want = silu(gb[i]);
      ASSERT_TRUE(is_bf16_value(s[i])) << i;
      // (1e-30: where exp overflows in float32, silu is a float 0 against a float64 ~1e-37)
      ASSERT_LE(std::fabs(s[i] - want), std::fabs(want) * std::ldexp(1.0, -8) * (1 + 1e-4) + 1e-30)
          << i << ": silu(" << gb[i] << ") = " << s[i] << " want " << want;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(hb[i]),
                std::bit_cast<std::uint32_t>(core::round_to_bf16(s[i] * ub[i])))
          << i;
    }
  }
}

// ---- LM head + cross-entropy ----

struct CeCase {
  std::vector<float> x, w;
  std::vector<std::int32_t> targets;
};

CeCase make_ce_case(std::mt19937_64& rng, std::int64_t tokens, std::int64_t hidden,
                    std::int64_t vocab) {
  CeCase c;
  c.x = random_floats(rng, sz(tokens * hidden));
  // W ~ N(0, 1/H): logits of order 1, so the softmax is neither flat nor one-hot.
  c.w = random_floats(rng, sz(vocab * hidden), 1.0f / std::sqrt(static_cast<float>(hidden)));
  std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(vocab - 1));
  std::uniform_int_distribution<int> coin(0, 4);
  c.targets.resize(sz(tokens));
  for (auto& t : c.targets)
    t = coin(rng) == 0 ? -1 : id(rng);  // about a fifth untargeted
  if (tokens > 1) c.targets[0] = -1;
  if (tokens > 2) c.targets[1] = static_cast<std::int32_t>(vocab - 1);
  return c;
}

struct CeOut {
  LossSum sum;
  std::vector<float> dx, dw, logits;
};

CeOut run_ce(const CeCase& c, std::int64_t hidden, std::int64_t vocab, std::int64_t chunk,
             bool bf16, double scale, std::span<const float> dw_init, bool want_logits) {
  const std::int64_t tokens = static_cast<std::int64_t>(c.targets.size());
  CeOut o;
  o.dx = poisoned(sz(tokens * hidden));
  o.dw.assign(dw_init.begin(), dw_init.end());
  if (want_logits) o.logits = poisoned(sz(tokens * vocab));
  o.sum =
      lm_head_cross_entropy(c.x.data(), c.w.data(), c.targets, hidden, vocab, chunk, bf16, scale,
                            o.dx.data(), o.dw.data(), want_logits ? o.logits.data() : nullptr);
  return o;
}

TEST_F(Layers, LmHeadCrossEntropyMatchesFloat64AcrossChunkSizes) {
  for (std::int64_t vocab : kVocab)
    for (std::int64_t hidden : kHidden)
      for (std::int64_t tokens : kTokens) {
        const CeCase c = make_ce_case(rng_, tokens, hidden, vocab);
        std::int64_t n_targets = 0;
        for (auto t : c.targets)
          n_targets += t >= 0;
        const double scale = 1.0 / static_cast<double>(std::max<std::int64_t>(n_targets, 1));

        const auto xd = to_double(c.x), wd = to_double(c.w);
        const auto logits = matmul_nt(xd, wd, tokens, vocab, hidden);
        const auto logits_abs = matmul_nt(abs_of(xd), abs_of(wd), tokens, vocab, hidden);
        const CeRef ref = ce_from_logits(logits, logits_abs, c.targets, vocab, scale);
        const auto& dl_abs = ref.dlogits_abs;
        const auto dx_ref = matmul_nn(ref.dlogits, wd, tokens, hidden, vocab);
        const auto dx_abs = matmul_nn(dl_abs, abs_of(wd), tokens, hidden, vocab);
        const auto dw_delta = matmul_tn(ref.dlogits, xd, vocab, hidden, tokens);
        const auto dw_delta_abs = matmul_tn(dl_abs, abs_of(xd), vocab, hidden, tokens);
        const auto dw_init = random_floats(rng_, sz(vocab * hidden), 1e-2f);
        std::vector<double> dw_ref = to_double(dw_init);
        double dw_floor = 0.0;
        for (std::size_t k = 0; k < dw_ref.size(); ++k) {
          dw_ref[k] += dw_delta[k];
          dw_floor = std::max(dw_floor, std::fabs(dw_init[k]) + dw_delta_abs[k]);
        }

        // A direct computation of the logits: the whole [T, V] at once through linear_forward.
        std::vector<float> direct = poisoned(sz(tokens * vocab));
        linear_forward(c.x.data(), c.w.data(), nullptr, tokens, hidden, vocab, false,
                       direct.data());

        std::optional<CeOut> first;
        // Chunks larger than T, of one token, of 5 (37 at 300 tokens), the last chunk short.
        // Each chunk costs up to four parallel regions, slow on a busy machine: chunks of one
        // token only on the short inputs.
        const std::int64_t small_chunk = tokens > 129 ? 37 : 5;
        for (std::int64_t chunk : {tokens + 3, std::int64_t{1}, small_chunk}) {
          if (chunk == 1 && tokens > 7) continue;
          SCOPED_TRACE(testing::Message() << "V " << vocab << " H " << hidden << " T " << tokens
                                          << " chunk " << chunk);
          for (bool want_logits : {false, true}) {
            if (want_logits && chunk == small_chunk) continue;  // covered by 1 and > T
            SCOPED_TRACE(testing::Message() << "logits_out " << want_logits);
            CeOut o = run_ce(c, hidden, vocab, chunk, false, scale, dw_init, want_logits);
            EXPECT_EQ(o.sum.tokens, n_targets);
            EXPECT_EQ(o.sum.tokens, ref.tokens);
            EXPECT_LE(std::fabs(o.sum.loss - ref.loss),
                      kTolF32 * std::max(std::fabs(ref.loss), ref.loss_scale))
                << o.sum.loss << " vs " << ref.loss;
            EXPECT_TRUE(close(o.dx, dx_ref, kTolF32, max_abs(dx_abs)));
            // Untargeted rows: a written 0.
            for (std::int64_t t = 0; t < tokens; ++t) {
              if (c.targets[sz(t)] >= 0) continue;
              for (std::int64_t i = 0; i < hidden; ++i)
                ASSERT_EQ(o.dx[sz(t * hidden + i)], 0.0f) << "t " << t;
            }
            EXPECT_TRUE(close(o.dw, dw_ref, kTolF32, dw_floor));
            if (want_logits) {
              EXPECT_TRUE(close(o.logits, logits, kTolF32, max_abs(logits_abs)));
              // One chunk is the same GEMM as the direct one: the same bits. Smaller chunks are
              // GEMMs of other shapes, whose kernels sum in another order (OpenBLAS): float32
              // rounding apart, 1e-6 of the sum of |terms|.
              if (chunk >= tokens)
                EXPECT_TRUE(bits_equal(o.logits, direct)) << "logits_out differ from x W^T";
              else
                EXPECT_TRUE(close(o.logits, to_double(direct), 1e-6, max_abs(logits_abs)));
            }
            // Chunking invariance: the loss within 1e-6 relative, gradients within 1e-5 of the
            // tensor's scale, against the first chunk size.
            if (!first) {
              first = std::move(o);
              continue;
            }
            EXPECT_LE(std::fabs(o.sum.loss - first->sum.loss),
                      1e-6 * std::max(std::fabs(first->sum.loss), 1e-30));
            EXPECT_TRUE(close(o.dx, to_double(first->dx), 1e-5, max_abs(dx_abs)));
            EXPECT_TRUE(close(o.dw, to_double(first->dw), 1e-5, dw_floor));
          }
        }
      }
}

TEST_F(Layers, LmHeadCrossEntropyBf16RoundsLogitsAndGradients) {
  for (std::int64_t vocab : kVocab)
    for (std::int64_t hidden : kHidden)
      for (std::int64_t tokens : {1, 129}) {
        SCOPED_TRACE(testing::Message() << "V " << vocab << " H " << hidden << " T " << tokens);
        CeCase c = make_ce_case(rng_, tokens, hidden, vocab);
        c.x = test_support::round_to_bf16(c.x);
        c.w = test_support::round_to_bf16(c.w);
        const double scale = 0.75;
        const std::vector<float> dw_init(sz(vocab * hidden), 0.0f);
        const CeOut f32 = run_ce(c, hidden, vocab, 50, false, scale, dw_init, true);
        const CeOut o = run_ce(c, hidden, vocab, 50, true, scale, dw_init, true);
        // The logits: the float32 ones rounded, bit for bit.
        for (std::size_t k = 0; k < o.logits.size(); ++k)
          ASSERT_EQ(std::bit_cast<std::uint32_t>(o.logits[k]),
                    std::bit_cast<std::uint32_t>(core::round_to_bf16(f32.logits[k])))
              << k;
        // The loss: float64 log-softmax of those bf16 logits (upcast as transformers does); the
        // layer exponentiates in float32 (as torch does), so about 1e-7 relative per term.
        const auto ld = to_double(o.logits);
        const CeRef ref = ce_from_logits(ld, abs_of(ld), c.targets, vocab, scale);
        EXPECT_EQ(o.sum.tokens, ref.tokens);
        EXPECT_NEAR(o.sum.loss, ref.loss, 1e-6 * std::max(1.0, ref.loss_scale));
        // dlogits rounded to bf16 (float64 -> float32 -> bf16, as the float32 layer would), then
        // the float32 GEMMs against the float64 products of those values.
        std::vector<double> dl(ref.dlogits.size());
        for (std::size_t k = 0; k < dl.size(); ++k)
          dl[k] = core::round_to_bf16(static_cast<float>(ref.dlogits[k]));
        // The layer computes dlogits in float32, so one can round to the neighbouring bf16 value
        // of the reference's: allow one bf16 ulp (2^-8 relative) of each dlogit on top.
        const double tol = kTolF32 + std::ldexp(1.0, -8);
        const auto xd = to_double(c.x), wd = to_double(c.w);
        const auto& dl_abs = ref.dlogits_abs;
        EXPECT_TRUE(close(o.dx, matmul_nn(dl, wd, tokens, hidden, vocab), tol,
                          max_abs(matmul_nn(dl_abs, abs_of(wd), tokens, hidden, vocab))));
        EXPECT_TRUE(close(o.dw, matmul_tn(dl, xd, vocab, hidden, tokens), tol,
                          max_abs(matmul_tn(dl_abs, abs_of(xd), vocab, hidden, tokens))));
      }
}

TEST_F(Layers, LmHeadCrossEntropyGradScaleForwardOnlyAndEdgeCases) {
  const std::int64_t tokens = 129, hidden = 5, vocab = 37;
  const CeCase c = make_ce_case(rng_, tokens, hidden, vocab);
  const auto dw_init = randn(sz(vocab * hidden));
  const CeOut one = run_ce(c, hidden, vocab, 5, false, 1.0, dw_init, false);

  // grad_scale scales dx and the dW increment, not the loss.
  for (double s : {2.5, 1.0 / 97.0, 0.0}) {
    SCOPED_TRACE(testing::Message() << "grad_scale " << s);
    const CeOut o = run_ce(c, hidden, vocab, 5, false, s, dw_init, false);
    EXPECT_EQ(o.sum.loss, one.sum.loss);
    std::vector<double> dx_want(one.dx.size()), dw_want(one.dw.size());
    for (std::size_t k = 0; k < dx_want.size(); ++k)
      dx_want[k] = s * one.dx[k];
    for (std::size_t k = 0; k < dw_want.size(); ++k)
      dw_want[k] = dw_init[k] + s * (static_cast<double>(one.dw[k]) - dw_init[k]);
    // float32 rounding of g * s vs g: 1e-5 relative to the unscaled tensor's magnitude times s
    // (the dW floor also covers the initial values).
    EXPECT_TRUE(close(o.dx, dx_want, kTolF32, s * max_abs(to_double(one.dx))));
    EXPECT_TRUE(close(o.dw, dw_want, kTolF32, max_abs(to_double(one.dw))));
  }

  // Forward only: dx null computes the same loss and touches no gradient.
  std::vector<float> dw_sentinel = dw_init;
  const LossSum fwd = lm_head_cross_entropy(c.x.data(), c.w.data(), c.targets, hidden, vocab, 5,
                                            false, 1.0, nullptr, dw_sentinel.data());
  EXPECT_EQ(fwd.loss, one.sum.loss);
  EXPECT_EQ(fwd.tokens, one.sum.tokens);
  EXPECT_TRUE(bits_equal(dw_sentinel, dw_init));
  const LossSum fwd_null = lm_head_cross_entropy(c.x.data(), c.w.data(), c.targets, hidden, vocab,
                                                 300, false, 1.0, nullptr, nullptr);
  EXPECT_NEAR(fwd_null.loss, one.sum.loss, 1e-6 * one.sum.loss);
  EXPECT_EQ(fwd_null.tokens, one.sum.tokens);
  // Forward only with logits_out: every row written, targeted or not.
  std::vector<float> logits = poisoned(sz(tokens * vocab));
  lm_head_cross_entropy(c.x.data(), c.w.data(), c.targets, hidden, vocab, 7, false, 1.0, nullptr,
                        nullptr, logits.data());
  const auto xd = to_double(c.x), wd = to_double(c.w);
  EXPECT_TRUE(close(logits, matmul_nt(xd, wd, tokens, vocab, hidden), kTolF32,
                    max_abs(matmul_nt(abs_of(xd), abs_of(wd), tokens, vocab, hidden))));

  // No targeted token: zero loss, zero count, dx written as zeros, dW untouched.
  {
    const std::vector<std::int32_t> none(sz(tokens), -1);
    std::vector<float> dx = poisoned(sz(tokens * hidden)), dw = dw_init;
    const LossSum r = lm_head_cross_entropy(c.x.data(), c.w.data(), none, hidden, vocab, 5, false,
                                            1.0, dx.data(), dw.data());
    EXPECT_EQ(r.loss, 0.0);
    EXPECT_EQ(r.tokens, 0);
    for (float v : dx)
      ASSERT_EQ(v, 0.0f);
    EXPECT_TRUE(bits_equal(dw, dw_init));
  }

  // A target outside [-1, V): an Error naming its position; a chunk of 0: an Error.
  for (std::int32_t bad : {-2, 37, 1000}) {
    auto targets = c.targets;
    targets[5] = bad;
    std::vector<float> dx = poisoned(sz(tokens * hidden)), dw = dw_init;
    try {
      lm_head_cross_entropy(c.x.data(), c.w.data(), targets, hidden, vocab, 5, false, 1.0,
                            dx.data(), dw.data());
      ADD_FAILURE() << "target " << bad << " accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("target[5]"), std::string::npos) << msg;
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
    }
    EXPECT_TRUE(bits_equal(dw, dw_init));
  }
  {
    std::vector<float> dx = poisoned(sz(tokens * hidden)), dw = dw_init;
    EXPECT_THROW(lm_head_cross_entropy(c.x.data(), c.w.data(), c.targets, hidden, vocab, 0, false,
                                       1.0, dx.data(), dw.data()),
                 Error);
  }
}

// ---- determinism ----

// Runs `f` at `n` OpenMP threads (OpenBLAS, the OpenMP build, follows), restoring the setting.
template <typename F>
void at_threads(int n, F&& f) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(previous);
}

TEST_F(Layers, ReductionsAreBitIdenticalAcrossThreadCounts) {
  // The GEMMs are thread-invariant only on request (layers.h); the rest always is.
  set_thread_invariant_gemms(true);
  struct Restore {
    ~Restore() { set_thread_invariant_gemms(false); }
  } restore;
  const std::int64_t tokens = 300, hidden = 200, vocab = 37, out = 64;
  const auto ids = random_ids(sz(tokens), vocab);
  const auto x = rms_input(rng_, tokens, hidden);
  const auto w_norm = randn(sz(hidden));
  const auto dout = randn(sz(tokens * hidden));
  const auto w_lin = randn(sz(out * hidden));
  const auto dy = randn(sz(tokens * out));
  const CeCase ce = make_ce_case(rng_, tokens, hidden, 1000);

  // Small products too (OpenBLAS's single-threaded path, no parallel region).
  const auto x_small = randn(7 * 5), w_small = randn(37 * 5), dy_small = randn(7 * 37);
  const CeCase ce_small = make_ce_case(rng_, 7, 5, 37);

  struct Grads {
    std::vector<float> dtable, rms_dx, rms_dw, lin_y, lin_dx, lin_dw, lin_db, ce_dx, ce_dw;
    std::vector<float> small_y, small_dx, small_dw, small_ce_dx, small_ce_dw;
    double loss = 0.0, small_loss = 0.0;
  };
  const auto run = [&] {
    Grads g;
    g.dtable.assign(sz(vocab * hidden), 0.5f);
    embedding_backward(ids, dout.data(), hidden, g.dtable.data());
    std::vector<float> normed = poisoned(x.size()), rstd = poisoned(sz(tokens));
    rmsnorm_forward(x.data(), w_norm.data(), tokens, hidden, kEps, false, normed.data(),
                    rstd.data());
    g.rms_dx = poisoned(x.size());
    g.rms_dw.assign(sz(hidden), 0.25f);
    rmsnorm_backward(x.data(), w_norm.data(), rstd.data(), dout.data(), tokens, hidden, false,
                     g.rms_dx.data(), g.rms_dw.data());
    g.lin_y = poisoned(sz(tokens * out));
    linear_forward(x.data(), w_lin.data(), nullptr, tokens, hidden, out, false, g.lin_y.data());
    g.lin_dx = poisoned(sz(tokens * hidden));
    g.lin_dw.assign(sz(out * hidden), 0.125f);
    g.lin_db.assign(sz(out), 1.0f);
    linear_backward(x.data(), w_lin.data(), dy.data(), tokens, hidden, out, false, g.lin_dx.data(),
                    g.lin_dw.data(), g.lin_db.data());
    g.ce_dx = poisoned(sz(tokens * hidden));
    g.ce_dw.assign(sz(1000 * hidden), 0.0f);
    g.loss = lm_head_cross_entropy(ce.x.data(), ce.w.data(), ce.targets, hidden, 1000, 128, false,
                                   1.0 / 300, g.ce_dx.data(), g.ce_dw.data())
                 .loss;
    g.small_y = poisoned(7 * 37);
    linear_forward(x_small.data(), w_small.data(), nullptr, 7, 5, 37, false, g.small_y.data());
    g.small_dx = poisoned(7 * 5);
    g.small_dw.assign(37 * 5, 0.0f);
    linear_backward(x_small.data(), w_small.data(), dy_small.data(), 7, 5, 37, false,
                    g.small_dx.data(), g.small_dw.data(), nullptr);
    g.small_ce_dx = poisoned(7 * 5);
    g.small_ce_dw.assign(37 * 5, 0.0f);
    g.small_loss =
        lm_head_cross_entropy(ce_small.x.data(), ce_small.w.data(), ce_small.targets, 5, 37, 5,
                              false, 1.0, g.small_ce_dx.data(), g.small_ce_dw.data())
            .loss;
    return g;
  };
  Grads one, two;
  at_threads(1, [&] { one = run(); });
  at_threads(2, [&] { two = run(); });
  EXPECT_TRUE(bits_equal(one.dtable, two.dtable)) << "embedding dtable";
  EXPECT_TRUE(bits_equal(one.rms_dx, two.rms_dx)) << "rmsnorm dx";
  EXPECT_TRUE(bits_equal(one.rms_dw, two.rms_dw)) << "rmsnorm dweight";
  EXPECT_TRUE(bits_equal(one.lin_y, two.lin_y)) << "linear y";
  EXPECT_TRUE(bits_equal(one.lin_dx, two.lin_dx)) << "linear dx";
  EXPECT_TRUE(bits_equal(one.lin_dw, two.lin_dw)) << "linear dweight";
  EXPECT_TRUE(bits_equal(one.lin_db, two.lin_db)) << "linear dbias";
  EXPECT_TRUE(bits_equal(one.ce_dx, two.ce_dx)) << "lm head dx";
  EXPECT_TRUE(bits_equal(one.ce_dw, two.ce_dw)) << "lm head dweight";
  EXPECT_EQ(one.loss, two.loss);
  EXPECT_TRUE(bits_equal(one.small_y, two.small_y)) << "small linear y";
  EXPECT_TRUE(bits_equal(one.small_dx, two.small_dx)) << "small linear dx";
  EXPECT_TRUE(bits_equal(one.small_dw, two.small_dw)) << "small linear dweight";
  EXPECT_TRUE(bits_equal(one.small_ce_dx, two.small_ce_dx)) << "small lm head dx";
  EXPECT_TRUE(bits_equal(one.small_ce_dw, two.small_ce_dw)) << "small lm head dweight";
  EXPECT_EQ(one.small_loss, two.small_loss);
  // And nothing left unwritten.
  for (const auto* v : {&one.rms_dx, &one.lin_y, &one.lin_dx, &one.ce_dx, &one.small_y,
                        &one.small_dx, &one.small_ce_dx})
    for (float e : *v)
      ASSERT_FALSE(std::isnan(e));
}

}  // namespace
}  // namespace anchorctx::model
