#include "anchorctx/attention/reference.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "attention/test_support.h"

namespace anchorctx::attention {
namespace {

using test_support::LayoutOptions;
using test_support::random_layout;
using test_support::test_seed;

constexpr MaskKind kMasks[] = {MaskKind::causal, MaskKind::intra_doc, MaskKind::anchor};

std::vector<double> random_doubles(std::mt19937_64& rng, std::size_t n) {
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> x(n);
  for (double& v : x)
    v = dist(rng);
  return x;
}

TEST(ReferenceForward, OneTokenSequencesCopyV) {
  // Each sequence one token: the token sees only itself, so out = v and lse = scale * q.k.
  const auto layout = AttentionLayout::from_document_lengths({{1}, {1}}, 0);
  const AttentionDims dims{2, 1, 2};
  const std::vector<double> q = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<double> k = {0.5, -1, 2, 0.25};
  const std::vector<double> v = {9, 10, 11, 12};
  std::vector<double> out(8), lse(4);
  reference_forward(layout, MaskKind::causal, dims, q, k, v, out, lse, 0.5);
  EXPECT_EQ(out, (std::vector<double>{9, 10, 9, 10, 11, 12, 11, 12}));
  // lse is [Hq, T]: head 0 then head 1.
  EXPECT_DOUBLE_EQ(lse[0], 0.5 * (1 * 0.5 + 2 * -1));
  EXPECT_DOUBLE_EQ(lse[1], 0.5 * (5 * 2 + 6 * 0.25));
  EXPECT_DOUBLE_EQ(lse[2], 0.5 * (3 * 0.5 + 4 * -1));
  EXPECT_DOUBLE_EQ(lse[3], 0.5 * (7 * 2 + 8 * 0.25));
}

TEST(ReferenceForward, ZeroQueriesAverageTheVisibleValues) {
  // With q = 0 every visible key gets the same weight: out is the mean of the visible v rows
  // and lse = log(count). Docs [0,2) [2,5), anchor 1.
  const auto layout =
      AttentionLayout::from_arrays(std::vector<std::int32_t>{0, 5}, std::vector<std::int32_t>{0, 2},
                                   std::vector<std::int32_t>{0, 2}, std::vector<std::int32_t>{1});
  const AttentionDims dims{1, 1, 1};
  const std::vector<double> q(5, 0.0), k = {1, 2, 3, 4, 5}, v = {1, 2, 4, 8, 16};
  std::vector<double> out(5), lse(5);
  const struct {
    MaskKind mask;
    std::vector<double> out;
    std::vector<double> count;
  } cases[] = {
      {MaskKind::causal, {1, 1.5, 7.0 / 3, 15.0 / 4, 31.0 / 5}, {1, 2, 3, 4, 5}},
      {MaskKind::intra_doc, {1, 1.5, 4, 6, 28.0 / 3}, {1, 2, 1, 2, 3}},
      {MaskKind::anchor, {1, 1.5, 5.0 / 2, 13.0 / 3, 29.0 / 4}, {1, 2, 2, 3, 4}},
  };
  for (const auto& c : cases) {
    reference_forward(layout, c.mask, dims, q, k, v, out, lse);
    for (int i = 0; i < 5; ++i) {
      EXPECT_NEAR(out[i], c.out[i], 1e-12) << to_string(c.mask) << " row " << i;
      EXPECT_NEAR(lse[i], std::log(c.count[i]), 1e-12) << to_string(c.mask) << " row " << i;
    }
  }
}

TEST(ReferenceForward, LargeScoresDoNotOverflow) {
  const auto layout = AttentionLayout::from_document_lengths({{3}}, 0);
  const AttentionDims dims{1, 1, 1};
  const std::vector<double> q = {1000, 1000, 1000}, k = {1, 1, 1}, v = {1, 2, 3};
  std::vector<double> out(3), lse(3);
  reference_forward(layout, MaskKind::causal, dims, q, k, v, out, lse, 1.0);
  EXPECT_NEAR(out[2], 2.0, 1e-12);
  EXPECT_NEAR(lse[2], 1000.0 + std::log(3.0), 1e-9);
}

TEST(Reference, RejectsBadShapes) {
  const auto layout = AttentionLayout::from_document_lengths({{4}}, 0);
  std::vector<double> q(4 * 2 * 8), kv(4 * 1 * 8), out(4 * 2 * 8), lse(2 * 4);
  EXPECT_THROW(reference_forward(layout, MaskKind::causal, {3, 2, 8}, q, kv, kv, out, lse), Error);
  EXPECT_THROW(reference_forward(layout, MaskKind::causal, {2, 1, 8}, q, kv, kv, out,
                                 std::span<double>(lse).first(7)),
               Error);
  EXPECT_NO_THROW(reference_forward(layout, MaskKind::causal, {2, 1, 8}, q, kv, kv, out, lse));
}

// Gradients of sum(out * dout) against central finite differences, everything in float64.
TEST(ReferenceBackward, MatchesFiniteDifferences) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  const AttentionDims dim_cases[] = {{4, 2, 8}, {2, 2, 3}, {3, 1, 5}};
  for (MaskKind mask : kMasks) {
    for (const AttentionDims& dims : dim_cases) {
      LayoutOptions options;
      options.max_sequences = 3;
      options.max_seq_len = 14;
      options.tile = 4;
      const auto r = random_layout(rng, options);
      SCOPED_TRACE(testing::Message()
                   << to_string(mask) << " Hq=" << dims.heads_q << " Hkv=" << dims.heads_kv
                   << " D=" << dims.head_dim << " " << r.describe());
      const std::size_t t = r.total_tokens();
      const std::size_t nq = t * dims.heads_q * dims.head_dim;
      const std::size_t nkv = t * dims.heads_kv * dims.head_dim;
      std::vector<double> q = random_doubles(rng, nq), k = random_doubles(rng, nkv),
                          v = random_doubles(rng, nkv), dout = random_doubles(rng, nq);
      const double scale = 0.7;  // not the default, so a misplaced scale shows
      std::vector<double> dq(nq), dk(nkv), dv(nkv);
      reference_backward(r.layout, mask, dims, q, k, v, dout, dq, dk, dv, scale);

      std::vector<double> out(nq), lse(t * dims.heads_q);
      const auto objective = [&] {
        reference_forward(r.layout, mask, dims, q, k, v, out, lse, scale);
        double sum = 0.0;
        for (std::size_t i = 0; i < nq; ++i)
          sum += out[i] * dout[i];
        return sum;
      };
      const double h = 1e-5;
      const auto check = [&](std::vector<double>& x, const std::vector<double>& grad,
                             const char* name) {
        for (std::size_t i = 0; i < x.size(); ++i) {
          const double saved = x[i];
          x[i] = saved + h;
          const double plus = objective();
          x[i] = saved - h;
          const double minus = objective();
          x[i] = saved;
          const double numeric = (plus - minus) / (2 * h);
          // Truncation error ~h^2 and cancellation ~1e-16/h: 1e-7 leaves room for both.
          ASSERT_NEAR(grad[i], numeric, 1e-7 * std::max(1.0, std::fabs(numeric)))
              << name << "[" << i << "]";
        }
      };
      check(q, dq, "dq");
      check(k, dk, "dk");
      check(v, dv, "dv");
    }
  }
}

// The error scales bound the values they scale (every term counted by its absolute value, each
// probability weighted by at least 1), stay positive where the value itself cancels to exactly
// 0 (dq of a one-token document: dS = P (dP - rowsum(dO O)) with P = 1), and lse's is
// 1 + the row's largest |score|.
TEST(ReferenceErrorScales, BoundTheValuesAndStayPositiveWhereTheyCancel) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  // Sequence 0: documents of 1, 5 and 1 tokens; no anchor, so under intra_doc token 0 and
  // token 6 see only themselves.
  const auto layout = AttentionLayout::from_document_lengths({{1, 5, 1}, {3}}, 0);
  const AttentionDims dims{4, 2, 8};
  const std::size_t t = 10, nq = t * 4 * 8, nkv = t * 2 * 8;
  for (MaskKind mask : kMasks) {
    SCOPED_TRACE(to_string(mask));
    const auto q = random_doubles(rng, nq), k = random_doubles(rng, nkv),
               v = random_doubles(rng, nkv), dout = random_doubles(rng, nq);
    std::vector<double> out(nq), lse(t * 4), dq(nq), dk(nkv), dv(nkv);
    reference_forward(layout, mask, dims, q, k, v, out, lse);
    reference_backward(layout, mask, dims, q, k, v, dout, dq, dk, dv);
    std::vector<double> out_s(nq), lse_s(t * 4), dq_s(nq), dk_s(nkv), dv_s(nkv);
    reference_error_scales(layout, mask, dims, q, k, v, dout, out_s, lse_s, dq_s, dk_s, dv_s);
    const auto bounds = [](const std::vector<double>& x, const std::vector<double>& s,
                           const char* name) {
      for (std::size_t i = 0; i < x.size(); ++i) {
        ASSERT_GT(s[i], 0.0) << name << "[" << i << "]";
        ASSERT_GE(s[i], std::fabs(x[i])) << name << "[" << i << "]";
      }
    };
    bounds(out, out_s, "out");
    bounds(dq, dq_s, "dq");
    bounds(dk, dk_s, "dk");
    bounds(dv, dv_s, "dv");
    for (std::size_t i = 0; i < lse.size(); ++i)
      ASSERT_GE(lse_s[i], 1.0 + std::fabs(lse[i]) - std::log(10.0)) << "lse[" << i << "]";
    if (mask == MaskKind::intra_doc) {
      for (std::size_t token : {std::size_t{0}, std::size_t{6}}) {
        for (std::size_t c = 0; c < 4 * 8; ++c) {
          const std::size_t i = token * 4 * 8 + c;
          EXPECT_EQ(dq[i], 0.0) << "dq of one-token document, token " << token;
          EXPECT_GT(dq_s[i], 0.0);
        }
      }
    }
  }
  std::vector<double> big(nq), small(nq - 1), lse_s(t * 4), kv(nkv);
  EXPECT_THROW(reference_error_scales(layout, MaskKind::causal, dims, big, kv, kv, big, small,
                                      lse_s, big, kv, kv),
               Error);
}

}  // namespace
}  // namespace anchorctx::attention
