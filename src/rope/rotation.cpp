// RotationTable: cos/sin per (token, frequency) and the rotate-half rotation over [T, heads, D],
// forward and backward, with the rounding of each precision mode (rope.h, docs/ROPE.md).
//
// Speed: both passes are one streaming sweep over x (T up to 16K, every layer, q and k), so
// tokens are split over OpenMP threads and the inner loop over the D/2 pairs of a head is
// branch-free so that it vectorises (GCC vectorises core::round_to_bf16 too), compiled for
// AVX-512, AVX2 and baseline x86-64 and chosen at run time: the bf16 roundings make hf_bf16
// compute-bound, where the vector width pays.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/isa.h"
#include "anchorctx/rope/rope.h"

// Each product and each sum rounds on its own (to float32, then to bf16 in hf_bf16), as torch's
// separate mul and add kernels do: no FMA contraction (-ffp-contract=off, CMakeLists.txt).

namespace anchorctx::rope {
namespace {

// Below this many elements the threads cost more than they save.
constexpr std::int64_t kParallelMin = 1 << 15;
// Tokens per work item of the parallel sweep.
constexpr std::int64_t kChunk = 16;

// One call's tensor: x [tokens, heads, 2 * half] and the table's cos/sin [tokens, half].
struct Sweep {
  float* x;
  std::int64_t heads, half;
  const float* cos;
  const float* sin;
};

// Tokens [begin, end), all heads: each pair (x[i], x[i + half]) = (a, b) becomes
//   forward:  (a c - b s, b c + a s)
//   backward: (a c + b s, b c - a s)        (the transpose)
// kRound: every product and every sum rounded to bf16, as torch computes
// `q * cos + rotate_half(q) * sin` in bf16 (and autograd its gradient).
template <bool kBackward, bool kRound>
[[gnu::always_inline]] inline void rotate_tokens(const Sweep& w, std::int64_t begin,
                                                 std::int64_t end) {
  const std::int64_t half = w.half, row = w.heads * 2 * half;
  for (std::int64_t t = begin; t < end; ++t) {
    const float* __restrict c = w.cos + t * half;
    const float* __restrict s = w.sin + t * half;
    for (std::int64_t h = 0; h < w.heads; ++h) {
      float* __restrict x1 = w.x + t * row + h * 2 * half;
      float* __restrict x2 = x1 + half;
      for (std::int64_t i = 0; i < half; ++i) {
        const float a = x1[i], b = x2[i];
        float ac = a * c[i], bs = b * s[i], bc = b * c[i], as = a * s[i];
        if constexpr (kRound) {
          ac = core::round_to_bf16(ac);
          bs = core::round_to_bf16(bs);
          bc = core::round_to_bf16(bc);
          as = core::round_to_bf16(as);
        }
        float y1 = kBackward ? ac + bs : ac - bs;
        float y2 = kBackward ? bc - as : bc + as;
        if constexpr (kRound) {
          y1 = core::round_to_bf16(y1);
          y2 = core::round_to_bf16(y2);
        }
        x1[i] = y1;
        x2[i] = y2;
      }
    }
  }
}

// The sweep compiled three times: the loop above is IEEE float products and sums plus integer
// bf16 rounding, so the vector width changes the speed, never a bit (no FMA: see the pragma).
using RangeFn = void (*)(const Sweep&, std::int64_t, std::int64_t);

template <bool kBackward, bool kRound>
void range_portable(const Sweep& w, std::int64_t begin, std::int64_t end) {
  rotate_tokens<kBackward, kRound>(w, begin, end);
}
template <bool kBackward, bool kRound>
[[gnu::target("avx2")]] void range_avx2(const Sweep& w, std::int64_t begin, std::int64_t end) {
  rotate_tokens<kBackward, kRound>(w, begin, end);
}
template <bool kBackward, bool kRound>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512dq")]] void range_avx512(const Sweep& w,
                                                                        std::int64_t begin,
                                                                        std::int64_t end) {
  rotate_tokens<kBackward, kRound>(w, begin, end);
}

using core::Isa;

template <bool kBackward, bool kRound>
RangeFn pick_range() {
  switch (core::selected_isa()) {
    case Isa::avx512:
      return range_avx512<kBackward, kRound>;
    case Isa::avx2:
      return range_avx2<kBackward, kRound>;
    case Isa::portable:
      break;
  }
  return range_portable<kBackward, kRound>;
}

template <bool kBackward>
void rotate(RopeMode mode, const Sweep& w, std::int64_t tokens) {
  const RangeFn range =
      mode == RopeMode::hf_bf16 ? pick_range<kBackward, true>() : pick_range<kBackward, false>();
  const std::int64_t chunks = (tokens + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (tokens * w.heads * w.half > kParallelMin)
  for (std::int64_t k = 0; k < chunks; ++k)
    range(w, k * kChunk, std::min(tokens, (k + 1) * kChunk));
}

}  // namespace

RotationTable::RotationTable(const RopeFrequencies& frequencies,
                             std::span<const std::int32_t> positions, RopeMode mode)
    : mode_(mode),
      tokens_(static_cast<std::int64_t>(positions.size())),
      half_(static_cast<std::int64_t>(frequencies.inv_freq.size())) {
  for (std::size_t t = 0; t < positions.size(); ++t)
    require(positions[t] >= 0, "rope: position id {} of token {} is negative", positions[t], t);
  const std::size_t n = positions.size() * frequencies.inv_freq.size();
  cos_.resize(n);
  sin_.resize(n);

  const float* inv_freq = frequencies.inv_freq.data();
  const float scaling = frequencies.attention_scaling;
  const bool round = mode == RopeMode::hf_bf16;
  const std::int64_t half = half_;
#pragma omp parallel for schedule(static) if (tokens_ * half_ > 4096)
  for (std::int64_t t = 0; t < tokens_; ++t) {
    // transformers: freqs = position_ids.float() * inv_freq (float32), cos = freqs.cos() *
    // attention_scaling, then .to(bf16) when the model runs in bf16.
    const float position = static_cast<float>(positions[static_cast<std::size_t>(t)]);
    float* c = cos_.data() + t * half;
    float* s = sin_.data() + t * half;
    for (std::int64_t i = 0; i < half; ++i) {
      const float angle = position * inv_freq[i];
      c[i] = std::cos(angle) * scaling;
      s[i] = std::sin(angle) * scaling;
    }
    if (round) {
      for (std::int64_t i = 0; i < half; ++i) {
        c[i] = core::round_to_bf16(c[i]);
        s[i] = core::round_to_bf16(s[i]);
      }
    }
  }
}

void RotationTable::forward(float* x, std::int64_t heads) const {
  require(heads >= 0, "rope: heads must not be negative, got {}", heads);
  if (tokens_ == 0 || heads == 0 || half_ == 0) return;
  require(x != nullptr, "rope: forward on a null tensor");
  rotate<false>(mode_, {x, heads, half_, cos_.data(), sin_.data()}, tokens_);
}

void RotationTable::backward(float* dx, std::int64_t heads) const {
  require(heads >= 0, "rope: heads must not be negative, got {}", heads);
  if (tokens_ == 0 || heads == 0 || half_ == 0) return;
  require(dx != nullptr, "rope: backward on a null tensor");
  rotate<true>(mode_, {dx, heads, half_, cos_.data(), sin_.data()}, tokens_);
}

}  // namespace anchorctx::rope
