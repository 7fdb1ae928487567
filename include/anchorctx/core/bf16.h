// bfloat16: the upper 16 bits of an IEEE float32.
//
// Conversion from float rounds to nearest, ties to even, and maps every NaN to the quiet NaN
// 0x7FC0 -- bit-identical to PyTorch's c10::BFloat16 constructor, so tensors exchanged with
// PyTorch round-trip exactly. Conversion to float is exact.
#pragma once

#include <bit>
#include <cstdint>

namespace anchorctx::core {

struct bf16 {
  std::uint16_t bits = 0;

  bf16() = default;
  static constexpr bf16 from_bits(std::uint16_t b) {
    bf16 v;
    v.bits = b;
    return v;
  }
  friend constexpr bool operator==(bf16 a, bf16 b) { return a.bits == b.bits; }
};
static_assert(sizeof(bf16) == 2);

// Round-to-nearest-even on the 16 low bits that are dropped.
constexpr std::uint16_t float_to_bf16_bits(float value) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;  // NaN: canonical quiet NaN
  const std::uint32_t lsb = (u >> 16) & 1u;
  return static_cast<std::uint16_t>((u + 0x7FFFu + lsb) >> 16);
}

constexpr float bf16_bits_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

constexpr bf16 to_bf16(float value) {
  return bf16::from_bits(float_to_bf16_bits(value));
}
constexpr float to_float(bf16 value) {
  return bf16_bits_to_float(value.bits);
}

// The float nearest to `value` that bf16 can hold (what a round trip through bf16 gives).
constexpr float round_to_bf16(float value) {
  return to_float(to_bf16(value));
}

}  // namespace anchorctx::core
