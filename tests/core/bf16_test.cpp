#include "anchorctx/core/bf16.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include <gtest/gtest.h>

namespace anchorctx::core {
namespace {

std::uint16_t bits_of(std::uint32_t float_bits) {
  return float_to_bf16_bits(std::bit_cast<float>(float_bits));
}

// Round to nearest, ties to even, derived the slow way: compare the distances (exact in
// double) to the two bf16 values around x. Shares no arithmetic with the bit trick under test.
std::uint16_t slow_round(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t lo = u & 0xFFFF0000u;
  const std::uint32_t hi = lo + 0x10000u;  // next bf16 away from zero (may be inf)
  const double dx = x;
  const double dlo = std::fabs(dx - static_cast<double>(std::bit_cast<float>(lo)));
  // The value one bf16 step past `lo`, as a double, even where the float would be inf.
  const double step = std::ldexp(1.0, std::max(1, static_cast<int>((lo >> 23) & 0xFF)) - 127 - 7);
  const double dhi = step - dlo;
  if (dlo < dhi) return static_cast<std::uint16_t>(lo >> 16);
  if (dhi < dlo) return static_cast<std::uint16_t>(hi >> 16);
  return static_cast<std::uint16_t>(((lo >> 16) & 1u) == 0 ? lo >> 16 : hi >> 16);
}

TEST(Bf16, ExactValuesAreKept) {
  EXPECT_EQ(float_to_bf16_bits(0.0f), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16_bits(-2.0f), 0xC000);
  EXPECT_EQ(float_to_bf16_bits(0.5f), 0x3F00);
  EXPECT_EQ(float_to_bf16_bits(65536.0f), 0x4780);
}

TEST(Bf16, NegativeZeroKeepsItsSign) {
  EXPECT_EQ(float_to_bf16_bits(-0.0f), 0x8000);
  EXPECT_TRUE(std::signbit(bf16_bits_to_float(0x8000)));
  EXPECT_EQ(bf16_bits_to_float(0x8000), 0.0f);
}

TEST(Bf16, TiesGoToEvenInBothDirections) {
  // 1 + 2^-8 is exactly halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): stays down.
  EXPECT_EQ(bits_of(0x3F808000u), 0x3F80);
  // Halfway between 0x3F81 (odd) and 0x3F82 (even): goes up.
  EXPECT_EQ(bits_of(0x3F818000u), 0x3F82);
  // The same on negative numbers (the magnitude rounds).
  EXPECT_EQ(bits_of(0xBF808000u), 0xBF80);
  EXPECT_EQ(bits_of(0xBF818000u), 0xBF82);
  // A tie whose rounding up carries into the exponent: 0x3FFF is odd, so up to 0x4000 (2.0).
  EXPECT_EQ(bits_of(0x3FFF8000u), 0x4000);
}

TEST(Bf16, NonTiesGoToNearest) {
  EXPECT_EQ(bits_of(0x3F807FFFu), 0x3F80);  // just below the half
  EXPECT_EQ(bits_of(0x3F808001u), 0x3F81);  // just above the half
  EXPECT_EQ(bits_of(0x3F80FFFFu), 0x3F81);
  EXPECT_EQ(bits_of(0x3F81FFFFu), 0x3F82);
  // Values whose PyTorch results are well known: bf16(pi) = 3.140625, bf16(0.1) = 0.10009765625,
  // bf16(1/3) = 0.333984375.
  EXPECT_EQ(float_to_bf16_bits(3.14159265f), 0x4049);
  EXPECT_EQ(bf16_bits_to_float(0x4049), 3.140625f);
  EXPECT_EQ(float_to_bf16_bits(0.1f), 0x3DCD);
  EXPECT_EQ(bf16_bits_to_float(0x3DCD), 0.10009765625f);
  EXPECT_EQ(float_to_bf16_bits(1.0f / 3.0f), 0x3EAB);
  EXPECT_EQ(bf16_bits_to_float(0x3EAB), 0.333984375f);
}

TEST(Bf16, EveryNanBecomesTheCanonicalQuietNan) {
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()), 0x7FC0);
  EXPECT_EQ(bits_of(0x7FC00000u), 0x7FC0);
  EXPECT_EQ(bits_of(0xFFC00000u), 0x7FC0);  // negative NaN
  EXPECT_EQ(bits_of(0x7F800001u), 0x7FC0);  // signalling NaN, payload only in the low bits
  EXPECT_EQ(bits_of(0x7FFFFFFFu), 0x7FC0);  // would carry into the sign if rounded naively
  EXPECT_EQ(bits_of(0xFF800001u), 0x7FC0);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(0x7FC0)));
}

TEST(Bf16, InfinitiesAndOverflow) {
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(float_to_bf16_bits(-std::numeric_limits<float>::infinity()), 0xFF80);
  // The largest float rounds up to infinity, as in PyTorch.
  EXPECT_EQ(bits_of(0x7F7FFFFFu), 0x7F80);
  EXPECT_EQ(bits_of(0xFF7FFFFFu), 0xFF80);
  // A tie below infinity with an odd last bit rounds up to it; just below the tie it does not.
  EXPECT_EQ(bits_of(0x7F7F8000u), 0x7F80);
  EXPECT_EQ(bits_of(0x7F7F7FFFu), 0x7F7F);
  // The largest finite bf16 is kept.
  EXPECT_EQ(bits_of(0x7F7F0000u), 0x7F7F);
}

TEST(Bf16, Denormals) {
  EXPECT_EQ(bits_of(0x00000001u), 0x0000);  // the smallest float denormal rounds to 0
  EXPECT_EQ(bits_of(0x00008000u), 0x0000);  // tie, 0 is even
  EXPECT_EQ(bits_of(0x00018000u), 0x0002);  // tie, 0x0001 odd: up
  EXPECT_EQ(bits_of(0x00010000u), 0x0001);  // the smallest bf16 denormal, exact
  EXPECT_EQ(bits_of(0x80008001u), 0x8001);  // negative, just above the half
  EXPECT_EQ(bits_of(0x007FFFFFu), 0x0080);  // the largest denormal rounds up to the smallest normal
  EXPECT_EQ(bf16_bits_to_float(0x0001), std::bit_cast<float>(0x00010000u));
}

TEST(Bf16, EveryBf16RoundTripsExactly) {
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const std::uint16_t bits = static_cast<std::uint16_t>(b);
    const float f = bf16_bits_to_float(bits);
    const std::uint16_t expected = std::isnan(f) ? std::uint16_t{0x7FC0} : bits;
    ASSERT_EQ(float_to_bf16_bits(f), expected) << "bits 0x" << std::hex << b;
    ASSERT_EQ(std::bit_cast<std::uint32_t>(f), b << 16);
  }
}

TEST(Bf16, MatchesSlowRoundingOnRandomFloats) {
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  int checked = 0;
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t u = any_bits(rng);
    // Half of the draws land exactly on a tie, where a wrong rule shows.
    if (i % 2 == 0) u = (u & 0xFFFF0000u) | 0x8000u;
    const float x = std::bit_cast<float>(u);
    if (std::isnan(x) || std::isinf(x)) continue;
    ASSERT_EQ(float_to_bf16_bits(x), slow_round(x)) << "float bits 0x" << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 190000);
}

TEST(Bf16, WrappersAgree) {
  static_assert(float_to_bf16_bits(1.0f) == 0x3F80, "usable in constant expressions");
  static_assert(to_bf16(-2.0f) == bf16::from_bits(0xC000));
  EXPECT_EQ(to_bf16(0.1f).bits, 0x3DCD);
  EXPECT_EQ(to_float(bf16::from_bits(0x3F80)), 1.0f);
  EXPECT_EQ(round_to_bf16(0.1f), 0.10009765625f);
  EXPECT_EQ(bf16{}.bits, 0);
}

}  // namespace
}  // namespace anchorctx::core
