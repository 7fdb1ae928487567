// compute_frequencies against transformers 5.24 (the committed fixture of
// tools/fixtures/make_rope_fixtures.py), and its errors.
//
// Bit-exactness: every step of transformers' frequency code is IEEE arithmetic we reproduce
// operation by operation, except `base ** (2i / dim)`: torch's vectorised CPU pow is SLEEF's
// (within 1 ulp), ours glibc's powf (correctly rounded). The fixture stores torch's pow values,
// so the test knows where the two agree -- there inv_freq must match bit for bit -- and where
// they do not (7 of the 736 frequencies in the fixture); there it must be within 1 ulp.
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/rope/rope.h"
#include "rope/rope_fixture.h"

namespace anchorctx::rope {
namespace {

using rope_test::json;

TEST(RopeFrequencies, MatchTransformersBitForBit) {
  int cases = 0, exact = 0, pow_differs = 0;
  for (const json& c : rope_test::fixture().at("frequencies")) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const RopeSpec spec = rope_test::spec_of(c);
    const RopeFrequencies ours = compute_frequencies(spec, c.at("seq_len").get<std::int64_t>());
    const std::vector<float> want = rope_test::floats_from_bits(c.at("inv_freq_bits"));
    const std::vector<float> torch_pow = rope_test::floats_from_bits(c.at("pow_bits"));
    const float base = std::bit_cast<float>(c.at("pow_base_bits").get<std::uint32_t>());
    ASSERT_EQ(ours.inv_freq.size(), want.size());

    // attention_scaling multiplies float32 cos/sin, i.e. as float32(python float).
    EXPECT_EQ(
        std::bit_cast<std::uint32_t>(ours.attention_scaling),
        std::bit_cast<std::uint32_t>(static_cast<float>(c.at("attention_scaling").get<double>())));

    for (std::size_t i = 0; i < want.size(); ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(spec.head_dim);
      const bool same_pow = std::pow(base, exponent) == torch_pow[i];
      const std::int64_t ulps = rope_test::ulp_distance(ours.inv_freq[i], want[i]);
      if (same_pow) {
        EXPECT_EQ(ulps, 0) << "i=" << i << " ours " << ours.inv_freq[i] << " torch " << want[i];
      } else {
        ++pow_differs;
        EXPECT_LE(ulps, 1) << "i=" << i << " (torch's pow differs from powf here)";
      }
      exact += ulps == 0;
    }
    ++cases;
  }
  EXPECT_GE(cases, 15);
  // The fixture holds a few frequencies where torch's pow is not glibc's (they exercise the
  // bound above); more would mean the fixture or the pow changed.
  EXPECT_GE(pow_differs, 1);
  EXPECT_LE(pow_differs, 16);
  RecordProperty("exact_frequencies", exact);
}

// The fixture's own statement for dynamic: below max_position_embeddings the init-time table,
// past it a larger base (lower frequencies), growing with seq_len.
TEST(RopeFrequencies, DynamicDependsOnSequenceLength) {
  RopeSpec spec{64, 10000.0, {}, 2048};
  spec.scaling.type = RopeScalingType::dynamic;
  spec.scaling.factor = 2.0;
  const RopeFrequencies at_max = compute_frequencies(spec, 0);
  EXPECT_EQ(compute_frequencies(spec, 100).inv_freq, at_max.inv_freq);
  EXPECT_EQ(compute_frequencies(spec, 2048).inv_freq, at_max.inv_freq);
  const RopeFrequencies longer = compute_frequencies(spec, 4096);
  const RopeFrequencies longest = compute_frequencies(spec, 16384);
  EXPECT_EQ(longer.inv_freq[0], 1.0f);
  for (std::size_t i = 1; i < at_max.inv_freq.size(); ++i) {
    EXPECT_LT(longer.inv_freq[i], at_max.inv_freq[i]) << i;
    EXPECT_LT(longest.inv_freq[i], longer.inv_freq[i]) << i;
  }
}

// Scaling types that must reduce to the unscaled table.
TEST(RopeFrequencies, NeutralScalingsEqualDefault) {
  const RopeSpec plain{128, 500000.0, {}, 8192};
  const std::vector<float> base = compute_frequencies(plain).inv_freq;
  RopeSpec linear = plain;
  linear.scaling.type = RopeScalingType::linear;
  linear.scaling.factor = 1.0;
  EXPECT_EQ(compute_frequencies(linear).inv_freq, base);
  RopeSpec dynamic = plain;
  dynamic.scaling.type = RopeScalingType::dynamic;
  dynamic.scaling.factor = 1.0;
  EXPECT_EQ(compute_frequencies(dynamic, 100).inv_freq, base);
}

TEST(RopeFrequencies, RejectsBadSpecs) {
  EXPECT_THROW(compute_frequencies({63, 10000.0, {}, 2048}), Error);  // odd head_dim
  EXPECT_THROW(compute_frequencies({0, 10000.0, {}, 2048}), Error);
  EXPECT_THROW(compute_frequencies({-4, 10000.0, {}, 2048}), Error);
  EXPECT_THROW(compute_frequencies({64, 0.0, {}, 2048}), Error);
  EXPECT_THROW(compute_frequencies({64, std::nan(""), {}, 2048}), Error);
  EXPECT_THROW(compute_frequencies({64, 10000.0, {}, 2048}, -1), Error);

  const auto with = [](RopeScalingType type, auto edit) {
    RopeSpec spec{64, 10000.0, {}, 2048};
    spec.scaling.type = type;
    spec.scaling.factor = 4.0;
    spec.scaling.original_max_position_embeddings = 1024;
    edit(spec);
    return spec;
  };
  const auto bad_factor = [](RopeSpec& s) { s.scaling.factor = 0.0; };
  const auto nan_factor = [](RopeSpec& s) { s.scaling.factor = std::nan(""); };
  for (RopeScalingType type : {RopeScalingType::linear, RopeScalingType::dynamic,
                               RopeScalingType::llama3, RopeScalingType::yarn}) {
    SCOPED_TRACE(std::string(to_string(type)));
    EXPECT_NO_THROW(compute_frequencies(with(type, [](RopeSpec&) {})));
    EXPECT_THROW(compute_frequencies(with(type, bad_factor)), Error);
    EXPECT_THROW(compute_frequencies(with(type, nan_factor)), Error);
  }
  EXPECT_THROW(compute_frequencies(with(RopeScalingType::llama3,
                                        [](RopeSpec& s) { s.scaling.high_freq_factor = 1.0; })),
               Error);
  EXPECT_THROW(compute_frequencies(
                   with(RopeScalingType::llama3,
                        [](RopeSpec& s) { s.scaling.original_max_position_embeddings = 0; })),
               Error);
  EXPECT_THROW(compute_frequencies(
                   with(RopeScalingType::yarn,
                        [](RopeSpec& s) { s.scaling.original_max_position_embeddings = -5; })),
               Error);
  EXPECT_THROW(compute_frequencies(with(RopeScalingType::yarn,
                                        [](RopeSpec& s) { s.scaling.attention_factor = -1.0; })),
               Error);
  EXPECT_THROW(
      compute_frequencies(with(RopeScalingType::dynamic, [](RopeSpec& s) { s.head_dim = 2; })),
      Error);  // dim / (dim - 2)
  EXPECT_THROW(compute_frequencies(with(RopeScalingType::dynamic,
                                        [](RopeSpec& s) { s.max_position_embeddings = 0; })),
               Error);
  EXPECT_THROW(compute_frequencies(with(static_cast<RopeScalingType>(42), [](RopeSpec&) {})),
               Error);
}

TEST(RopeMode, NamesRoundTrip) {
  for (RopeMode mode : {RopeMode::fp32, RopeMode::hf_bf16, RopeMode::exact})
    EXPECT_EQ(parse_rope_mode(to_string(mode)), mode);
  EXPECT_EQ(to_string(RopeMode::hf_bf16), "hf_bf16");
  EXPECT_FALSE(parse_rope_mode("bf16").has_value());
  EXPECT_FALSE(parse_rope_mode("").has_value());
  EXPECT_FALSE(parse_rope_mode("FP32").has_value());
}

}  // namespace
}  // namespace anchorctx::rope
