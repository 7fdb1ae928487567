// RotationTable against torch (transformers' LlamaRotaryEmbedding + apply_rotary_pos_emb and
// autograd, the committed fixture), and the algebra of the rotation: backward is forward's
// adjoint, and q.k depends only on the position difference (within float rounding).
//
// Against torch: the table is built from torch's own inv_freq (frequencies_test.cpp checks
// ours), so these tests see only cos/sin and the rotation. torch's float32 cos/sin (MKL's vector
// cos/sin on the CPU) and glibc's cosf/sinf differ by 1 ulp on some angles, so:
//   - fp32 cos/sin: within 1 ulp of torch's (2 after yarn's attention scaling);
//   - bf16 cos/sin: bit-exact wherever our float32 value rounds to the same bf16 (a 1-ulp float32
//     difference changes the bf16 rounding about once in 2^16 values), else 1 bf16 ulp apart;
//   - rotations (hf_bf16 forward, autograd backward, fp32 forward/backward): bit-exact for every
//     pair whose cos and sin equal torch's; the others only counted (fp32: within 1e-6 of the
//     pair's norm).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/rope/rope.h"
#include "attention/test_support.h"
#include "rope/rope_fixture.h"

namespace anchorctx::rope {
namespace {

using rope_test::json;

struct TorchCase {
  std::string name;
  std::int64_t heads = 0, half = 0;
  std::vector<std::int32_t> positions;
  RopeFrequencies frequencies;
};

TorchCase torch_case(const json& r) {
  TorchCase c;
  c.name = r.at("case");
  c.heads = r.at("heads");
  c.positions = r.at("positions").get<std::vector<std::int32_t>>();
  const json& f = rope_test::frequency_case(c.name);
  c.frequencies.inv_freq = rope_test::floats_from_bits(f.at("inv_freq_bits"));
  c.frequencies.attention_scaling = static_cast<float>(f.at("attention_scaling").get<double>());
  c.half = static_cast<std::int64_t>(c.frequencies.inv_freq.size());
  return c;
}

// Per (token, frequency): whether our cos and sin are torch's, bit for bit.
std::vector<bool> table_matches(const RotationTable& table, const std::vector<float>& cos,
                                const std::vector<float>& sin) {
  std::vector<bool> same(cos.size());
  for (std::size_t j = 0; j < cos.size(); ++j)
    same[j] = table.cos()[j] == cos[j] && table.sin()[j] == sin[j];
  return same;
}

// Compares a rotated [T, heads, 2 * half] tensor with torch's: bit-exact on the pairs whose
// table entry matches (`same`), within `tolerance` times the pair's norm elsewhere. Returns the
// number of pairs on which the table differed.
int compare_rotated(const TorchCase& c, const std::vector<float>& input,
                    const std::vector<float>& ours, const std::vector<float>& want,
                    const std::vector<bool>& same, double tolerance) {
  int skipped = 0;
  const std::int64_t D = 2 * c.half;
  for (std::size_t t = 0; t < c.positions.size(); ++t) {
    for (std::int64_t h = 0; h < c.heads; ++h) {
      for (std::int64_t i = 0; i < c.half; ++i) {
        const std::size_t a = (t * c.heads + h) * D + i, b = a + c.half;
        if (same[t * c.half + i]) {
          EXPECT_EQ(ours[a], want[a]) << "token " << t << " head " << h << " i " << i;
          EXPECT_EQ(ours[b], want[b]) << "token " << t << " head " << h << " i+half " << i;
        } else {
          ++skipped;
          const double norm = std::hypot(input[a], input[b]);
          EXPECT_LE(std::abs(ours[a] - want[a]), tolerance * norm) << "token " << t << " i " << i;
          EXPECT_LE(std::abs(ours[b] - want[b]), tolerance * norm) << "token " << t << " i " << i;
        }
      }
    }
  }
  return skipped;
}

TEST(RopeRotation, Fp32MatchesTorch) {
  int cases = 0, table_ulps = 0, pairs_skipped = 0;
  for (const json& r : rope_test::fixture().at("rotations")) {
    const TorchCase c = torch_case(r);
    SCOPED_TRACE(c.name);
    const RotationTable table(c.frequencies, c.positions, RopeMode::fp32);
    const std::vector<float> cos = rope_test::floats_from_hex(r.at("cos_f32_bits"), 8);
    const std::vector<float> sin = rope_test::floats_from_hex(r.at("sin_f32_bits"), 8);
    ASSERT_EQ(table.cos().size(), cos.size());
    // 1 ulp of cos/sin, 2 once multiplied by an attention scaling other than 1 (yarn).
    const std::int64_t max_ulps = c.frequencies.attention_scaling == 1.0f ? 1 : 2;
    for (std::size_t j = 0; j < cos.size(); ++j) {
      EXPECT_LE(rope_test::ulp_distance(table.cos()[j], cos[j]), max_ulps) << j;
      EXPECT_LE(rope_test::ulp_distance(table.sin()[j], sin[j]), max_ulps) << j;
      table_ulps += table.cos()[j] != cos[j];
      table_ulps += table.sin()[j] != sin[j];
    }
    if (!r.contains("out_f32_bits")) continue;
    const std::vector<bool> same = table_matches(table, cos, sin);
    const std::vector<float> q = rope_test::floats_from_hex(r.at("q_bf16_bits"), 4);
    std::vector<float> out = q;
    table.forward(out.data(), c.heads);
    pairs_skipped +=
        compare_rotated(c, q, out, rope_test::floats_from_hex(r.at("out_f32_bits"), 8), same, 1e-6);
    const std::vector<float> dy = rope_test::floats_from_hex(r.at("dy_bf16_bits"), 4);
    std::vector<float> dx = dy;
    table.backward(dx.data(), c.heads);
    compare_rotated(c, dy, dx, rope_test::floats_from_hex(r.at("dx_f32_bits"), 8), same, 1e-6);
    ++cases;
  }
  EXPECT_GE(cases, 2);
  RecordProperty("fp32_table_values_1ulp_off", table_ulps);
  RecordProperty("fp32_pairs_not_bit_compared", pairs_skipped);
}

TEST(RopeRotation, HfBf16MatchesTorch) {
  int cases = 0, table_diffs = 0, pairs_skipped = 0;
  for (const json& r : rope_test::fixture().at("rotations")) {
    const TorchCase c = torch_case(r);
    SCOPED_TRACE(c.name);
    const RotationTable table(c.frequencies, c.positions, RopeMode::hf_bf16);
    const RotationTable fp32(c.frequencies, c.positions, RopeMode::fp32);
    const std::vector<float> cos = rope_test::floats_from_hex(r.at("cos_bf16_bits"), 4);
    const std::vector<float> sin = rope_test::floats_from_hex(r.at("sin_bf16_bits"), 4);
    const std::vector<float> cos32 = rope_test::floats_from_hex(r.at("cos_f32_bits"), 8);
    const std::vector<float> sin32 = rope_test::floats_from_hex(r.at("sin_f32_bits"), 8);
    ASSERT_EQ(table.cos().size(), cos.size());
    for (std::size_t j = 0; j < cos.size(); ++j) {
      // Our bf16 table is our float32 table rounded; it may differ from torch's only where the
      // float32 values already did.
      EXPECT_EQ(table.cos()[j], core::round_to_bf16(fp32.cos()[j]));
      EXPECT_EQ(table.sin()[j], core::round_to_bf16(fp32.sin()[j]));
      if (fp32.cos()[j] == cos32[j]) {
        EXPECT_EQ(table.cos()[j], cos[j]) << j;
      }
      if (fp32.sin()[j] == sin32[j]) {
        EXPECT_EQ(table.sin()[j], sin[j]) << j;
      }
      EXPECT_LE(rope_test::bf16_ulp_distance(table.cos()[j], cos[j]), 1) << j;
      EXPECT_LE(rope_test::bf16_ulp_distance(table.sin()[j], sin[j]), 1) << j;
      table_diffs += table.cos()[j] != cos[j];
      table_diffs += table.sin()[j] != sin[j];
    }
    const std::vector<bool> same = table_matches(table, cos, sin);
    const std::vector<float> q = rope_test::floats_from_hex(r.at("q_bf16_bits"), 4);
    std::vector<float> out = q;
    table.forward(out.data(), c.heads);
    // A pair whose cos or sin is 1 bf16 ulp off: its outputs are a few bf16 ulps off at most.
    pairs_skipped += compare_rotated(
        c, q, out, rope_test::floats_from_hex(r.at("out_bf16_bits"), 4), same, 0.05);
    const std::vector<float> dy = rope_test::floats_from_hex(r.at("dy_bf16_bits"), 4);
    std::vector<float> dx = dy;
    table.backward(dx.data(), c.heads);
    compare_rotated(c, dy, dx, rope_test::floats_from_hex(r.at("dx_bf16_bits"), 4), same, 0.05);
    ++cases;
  }
  EXPECT_EQ(cases, 3);
  RecordProperty("bf16_table_values_off", table_diffs);
  RecordProperty("bf16_pairs_not_bit_compared", pairs_skipped);
}

// Random inputs and positions (the seed is printed on failure; ANCHORCTX_TEST_SEED replays).
struct RandomRotation {
  std::vector<std::int32_t> positions;
  RopeFrequencies frequencies;
};

RandomRotation random_rotation(std::mt19937_64& rng, std::int64_t tokens, std::int64_t head_dim,
                               RopeScalingType type) {
  RopeSpec spec{head_dim, 10000.0, {}, 4096};
  spec.scaling.type = type;
  spec.scaling.factor = 4.0;
  spec.scaling.original_max_position_embeddings = 1024;
  RandomRotation r;
  r.frequencies = compute_frequencies(spec, 8192);
  std::uniform_int_distribution<std::int32_t> position(0, 16383);
  for (std::int64_t t = 0; t < tokens; ++t)
    r.positions.push_back(t % 3 == 0 ? static_cast<std::int32_t>(t) : position(rng));
  return r;
}

// <R x, y> == <x, R^T y>: backward is the transpose of forward (fp32 and exact share the
// code; yarn's attention scaling makes R a scaled rotation, still checked). Both sides are
// float32 computations; the bound is a few float32 roundings of every term.
TEST(RopeRotation, BackwardIsAdjointOfForward) {
  const std::uint64_t seed = test_support::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (RopeScalingType type : {RopeScalingType::none, RopeScalingType::yarn}) {
    for (RopeMode mode : {RopeMode::fp32, RopeMode::exact}) {
      const std::int64_t T = 37, heads = 3, D = 64;
      const RandomRotation r = random_rotation(rng, T, D, type);
      const RotationTable table(r.frequencies, r.positions, mode);
      const std::vector<float> x = test_support::random_floats(rng, T * heads * D);
      const std::vector<float> y = test_support::random_floats(rng, T * heads * D);
      std::vector<float> rx = x, rty = y;
      table.forward(rx.data(), heads);
      table.backward(rty.data(), heads);
      double lhs = 0.0, rhs = 0.0, scale = 0.0;
      for (std::size_t j = 0; j < x.size(); ++j) {
        lhs += static_cast<double>(rx[j]) * y[j];
        rhs += static_cast<double>(x[j]) * rty[j];
      }
      // Each rotated element is off by a few roundings of its pair's terms: bound by
      // (|x_a| + |x_b|)(|y_a| + |y_b|) per pair.
      for (std::size_t p = 0; p < x.size() / D; ++p) {
        for (std::int64_t i = 0; i < D / 2; ++i) {
          const std::size_t a = p * D + i, b = a + D / 2;
          scale += (std::abs(x[a]) + std::abs(x[b])) * (std::abs(y[a]) + std::abs(y[b]));
        }
      }
      EXPECT_NEAR(lhs, rhs, 8 * 0x1p-24 * scale) << to_string(mode);
      // R^T R x = scaling^2 x
      std::vector<float> back = rx;
      table.backward(back.data(), heads);
      const double s2 =
          static_cast<double>(r.frequencies.attention_scaling) * r.frequencies.attention_scaling;
      for (std::size_t j = 0; j < x.size(); ++j)
        ASSERT_NEAR(back[j], s2 * x[j], 1e-5 * (1.0 + std::abs(x[j]))) << j;
    }
  }
}

// hf_bf16 backward on bf16 values: what torch's autograd gives is checked against the fixture;
// here, that it stays a bf16 tensor close to the exact transpose.
TEST(RopeRotation, HfBf16OutputsAreBf16Values) {
  const std::uint64_t seed = test_support::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t T = 50, heads = 2, D = 128;
  const RandomRotation r = random_rotation(rng, T, D, RopeScalingType::llama3);
  const RotationTable bf16(r.frequencies, r.positions, RopeMode::hf_bf16);
  const RotationTable fp32(r.frequencies, r.positions, RopeMode::fp32);
  const std::vector<float> x =
      test_support::round_to_bf16(test_support::random_floats(rng, T * heads * D));
  for (bool backward : {false, true}) {
    std::vector<float> a = x, b = x;
    if (backward) {
      bf16.backward(a.data(), heads);
      fp32.backward(b.data(), heads);
    } else {
      bf16.forward(a.data(), heads);
      fp32.forward(b.data(), heads);
    }
    for (std::size_t j = 0; j < a.size(); ++j) {
      ASSERT_EQ(a[j], core::round_to_bf16(a[j])) << j;
      // bf16 cos/sin (2^-9 relative) and three bf16 roundings: well within 2^-6 of the pair.
      ASSERT_NEAR(a[j], b[j], 0x1p-6 * (std::abs(x[j]) + 4.0)) << j;
    }
  }
}

// The relative property in fp32: rotating q and k by (m + s, n + s) gives q.k of (m, n), up to
// float32 rounding -- chiefly of the angle position * inv_freq, whose error grows with the
// position (half an ulp of the angle); the bound adds up those errors per frequency.
TEST(RopeRotation, DotProductDependsOnPositionDifference) {
  const std::uint64_t seed = test_support::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t D = 64, half = D / 2;
  const RopeFrequencies f = compute_frequencies({D, 10000.0, {}, 4096});
  std::uniform_int_distribution<std::int32_t> position(0, 4095), shift(1, 12000);
  const auto angle_error = [&](std::int32_t p, std::int64_t i) {
    const float angle = static_cast<float>(p) * f.inv_freq[static_cast<std::size_t>(i)];
    return 0.5 * (std::nextafter(angle, 1e30f) - angle);
  };
  double worst = 0.0;
  for (int trial = 0; trial < 200; ++trial) {
    const std::int32_t m = position(rng), n = position(rng), s = shift(rng);
    const std::vector<std::int32_t> positions = {m, n, m + s, n + s};
    const RotationTable table(f, positions, RopeMode::fp32);
    const std::vector<float> q = test_support::random_floats(rng, D);
    const std::vector<float> k = test_support::random_floats(rng, D);
    std::vector<float> x(4 * D);
    for (int t = 0; t < 4; ++t)
      std::copy(t % 2 == 0 ? q.begin() : k.begin(), t % 2 == 0 ? q.end() : k.end(),
                x.begin() + t * D);
    table.forward(x.data(), 1);
    double near = 0.0, far = 0.0, bound = 0.0;
    for (std::int64_t j = 0; j < D; ++j) {
      near += static_cast<double>(x[j]) * x[D + j];
      far += static_cast<double>(x[2 * D + j]) * x[3 * D + j];
    }
    for (std::int64_t i = 0; i < half; ++i) {
      const double pair = std::hypot(q[i], q[i + half]) * std::hypot(k[i], k[i + half]);
      const double angles =
          angle_error(m, i) + angle_error(n, i) + angle_error(m + s, i) + angle_error(n + s, i);
      bound += pair * (angles + 16 * 0x1p-24);  // + cos/sin and product roundings
    }
    EXPECT_LE(std::abs(near - far), bound) << "m " << m << " n " << n << " s " << s;
    worst = std::max(worst, std::abs(near - far) / bound);
  }
  RecordProperty("worst_fraction_of_bound", std::to_string(worst));
}

// Sets ANCHORCTX_ISA for its lifetime and restores what was there before.
class ScopedIsa {
 public:
  explicit ScopedIsa(const char* isa) {
    if (const char* old = std::getenv("ANCHORCTX_ISA")) saved_ = old;
    ::setenv("ANCHORCTX_ISA", isa, 1);
  }
  ~ScopedIsa() {
    if (saved_) {
      ::setenv("ANCHORCTX_ISA", saved_->c_str(), 1);
    } else {
      ::unsetenv("ANCHORCTX_ISA");
    }
  }

 private:
  std::optional<std::string> saved_;
};

// The sweep is compiled for AVX-512, AVX2 and baseline x86-64: the same bits on every path
// (the fixture tests above run the best one), in every mode, with NaN and infinity among the
// inputs and a token count that is no multiple of the work chunk.
TEST(RopeRotation, SameBitsOnEveryInstructionSet) {
  const std::uint64_t seed = test_support::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t T = 203, heads = 3, D = 96;
  const RandomRotation r = random_rotation(rng, T, D, RopeScalingType::yarn);
  std::vector<float> x =
      test_support::round_to_bf16(test_support::random_floats(rng, T * heads * D, 3.0f));
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[D + 7] = std::numeric_limits<float>::infinity();
  x[2 * D + 1] = 3.3e38f;  // overflows to infinity once scaled
  for (RopeMode mode : {RopeMode::fp32, RopeMode::hf_bf16, RopeMode::exact}) {
    SCOPED_TRACE(std::string(to_string(mode)));
    const RotationTable table(r.frequencies, r.positions, mode);
    std::vector<std::uint32_t> reference;
    for (const char* isa : {"avx512", "avx2", "portable"}) {
      SCOPED_TRACE(isa);
      const ScopedIsa scoped(isa);
      std::vector<float> y = x;
      table.forward(y.data(), heads);
      table.backward(y.data(), heads);
      std::vector<std::uint32_t> bits(y.size());
      for (std::size_t j = 0; j < y.size(); ++j)
        bits[j] = std::bit_cast<std::uint32_t>(y[j]);
      if (reference.empty()) {
        reference = bits;
      } else {
        ASSERT_EQ(bits, reference);
      }
    }
  }
}

TEST(RopeRotation, RejectsBadInput) {
  const RopeFrequencies f = compute_frequencies({64, 10000.0, {}, 2048});
  const std::vector<std::int32_t> bad = {0, 5, -1, 7};
  EXPECT_THROW(RotationTable(f, bad, RopeMode::fp32), Error);
  const std::vector<std::int32_t> good = {0, 5, 2147483647};
  const RotationTable table(f, good, RopeMode::hf_bf16);
  EXPECT_EQ(table.tokens(), 3);
  EXPECT_EQ(table.half_dim(), 32);
  EXPECT_EQ(table.mode(), RopeMode::hf_bf16);
  EXPECT_THROW(table.forward(nullptr, 2), Error);
  EXPECT_THROW(table.backward(nullptr, 1), Error);
  std::vector<float> x(3 * 64, 1.0f);
  EXPECT_THROW(table.forward(x.data(), -1), Error);
  EXPECT_NO_THROW(table.forward(x.data(), 0));  // nothing to rotate
  // An empty batch is a table with no tokens.
  const RotationTable empty(f, {}, RopeMode::fp32);
  EXPECT_EQ(empty.tokens(), 0);
  EXPECT_NO_THROW(empty.forward(nullptr, 4));
}

// Position 0 is the identity (times the attention scaling); the table's cos/sin are those of
// float32(position) * inv_freq in every mode.
TEST(RopeRotation, TableValues) {
  const RopeFrequencies f = compute_frequencies({16, 10000.0, {}, 2048});
  const std::vector<std::int32_t> positions = {0, 1, 4095};
  for (RopeMode mode : {RopeMode::fp32, RopeMode::hf_bf16, RopeMode::exact}) {
    const RotationTable table(f, positions, mode);
    for (std::int64_t i = 0; i < 8; ++i) {
      EXPECT_EQ(table.cos()[i], 1.0f);
      EXPECT_EQ(table.sin()[i], 0.0f);
      const float angle = 4095.0f * f.inv_freq[i];
      const float c =
          mode == RopeMode::hf_bf16 ? core::round_to_bf16(std::cos(angle)) : std::cos(angle);
      EXPECT_EQ(table.cos()[2 * 8 + i], c);
    }
    std::mt19937_64 rng(7);
    const std::vector<float> x = test_support::round_to_bf16(test_support::random_floats(rng, 16));
    std::vector<float> y = x;
    const RotationTable first(f, std::vector<std::int32_t>{0}, mode);
    first.forward(y.data(), 1);
    EXPECT_EQ(y, x);
  }
}

}  // namespace
}  // namespace anchorctx::rope
