// A tiny SIMD layer over GCC/Clang vector extensions: one source for every instruction set.
// The translation unit that includes it decides the code: compiled with -mavx512f a 16-wide
// vector is one zmm register, with -mavx2 -mfma an 8-wide one is a ymm register (and a * b + c
// contracts to an FMA under -ffp-contract=fast), and without flags the compiler splits them
// into SSE2 operations -- the portable path.
//
// Everything here lives in the namespace of the including kernel TU (see kernels_impl.h), so
// the differently compiled copies never meet at link time.
#pragma once

// Included by kernels_impl.h inside its per-ISA namespace, after <cstddef>, <cstdint>,
// <cstring> and <immintrin.h>: it has no includes of its own on purpose.

// The width comes from the including TU (ANCHORCTX_VEC_WIDTH floats): GCC does not accept a
// template-dependent vector_size, and each TU needs exactly one width anyway.
struct Simd {
  static constexpr int W = ANCHORCTX_VEC_WIDTH;
  typedef float V __attribute__((vector_size(ANCHORCTX_VEC_WIDTH * sizeof(float))));
  typedef std::int32_t VI __attribute__((vector_size(ANCHORCTX_VEC_WIDTH * sizeof(std::int32_t))));

  static V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  // The intrinsic where there is one: it becomes a single broadcast from memory, where
  // `V{} + x` costs a scalar add first (0 + x cannot be folded: it turns -0 into +0) and an
  // element-wise fill came out as masked broadcasts (measured: the products ran 1.8x slower).
  static V set1(float x) {
#if defined(__AVX512F__) && ANCHORCTX_VEC_WIDTH == 16
    return _mm512_set1_ps(x);
#elif defined(__AVX__) && ANCHORCTX_VEC_WIDTH == 8
    return _mm256_set1_ps(x);
#elif defined(__SSE__) && ANCHORCTX_VEC_WIDTH == 4
    return _mm_set1_ps(x);
#else
    V v;
    for (int i = 0; i < W; ++i)
      v[i] = x;
    return v;
#endif
  }
  static V max(V a, V b) {
    return a > b ? a : b;
  }
  static V min(V a, V b) {
    return a < b ? a : b;
  }

  // The horizontal reductions run once per row of every tile (4 vectors of 64 columns), where
  // element loops over a vector went through the stack: 20% of the native forward's own time
  // (perf). Halving the vector with shuffles stays in registers, and the sum keeps its pairs
  // (element i + element i + half, down to one), so its bits are those of the element loop.
  typedef float V4 __attribute__((vector_size(4 * sizeof(float))));
  enum class Reduce { sum, max, min };
  template <Reduce R>
  static float reduce(V v) {
    const auto op = [](auto x, auto y) {
      if constexpr (R == Reduce::max) {
        return x > y ? x : y;
      } else if constexpr (R == Reduce::min) {
        return x < y ? x : y;
      } else {
        return x + y;
      }
    };
#if ANCHORCTX_VEC_WIDTH == 16
    typedef float V8 __attribute__((vector_size(8 * sizeof(float))));
    const V8 v8 = op(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
                     __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
    const V4 v4 = op(__builtin_shufflevector(v8, v8, 0, 1, 2, 3),
                     __builtin_shufflevector(v8, v8, 4, 5, 6, 7));
#elif ANCHORCTX_VEC_WIDTH == 8
    const V4 v4 =
        op(__builtin_shufflevector(v, v, 0, 1, 2, 3), __builtin_shufflevector(v, v, 4, 5, 6, 7));
#else
    const V4 v4 = v;
#endif
    const V4 v2 = op(v4, __builtin_shufflevector(v4, v4, 2, 3, 2, 3));
    return op(v2[0], v2[1]);
  }
  static float reduce_max(V v) {
    return reduce<Reduce::max>(v);
  }
  static float reduce_min(V v) {
    return reduce<Reduce::min>(v);
  }
  static float reduce_sum(V v) {
    return reduce<Reduce::sum>(v);
  }

  // 2^x for x <= 128, with inputs below -126 (and -inf) flushed to exactly 0 so masked scores
  // contribute nothing. Split x = n + f with n integer and |f| <= 1/2; 2^f from the Cephes
  // exp2f polynomial (relative error below 2e-7), 2^n built in the exponent bits.
  // Always inlined: the backward's probability loop called it out of line (its constants
  // reloaded and its argument passed through memory on every vector; perf showed the call).
  [[gnu::always_inline]] static V exp2(V x) {
    return exp2_impl<true>(x);
  }

  // exp2 for x <= 0 up to a rounding error (a softmax's scores minus their running maximum),
  // its bits without its two clamps on AVX-512: there a lane below -126 is zeroed by the final
  // mask whatever n and f came to, and none is above 127. Elsewhere exp2 itself (the integer
  // exponent build needs n in range). Two of the forward softmax's ~16 operations per vector.
  [[gnu::always_inline]] static V exp2_nonpositive(V x) {
    return exp2_impl<false>(x);
  }

  template <bool Clamp>
  [[gnu::always_inline]] static V exp2_impl(V x) {
    const V lo = set1(-126.0f);
#if defined(__AVX512F__) && ANCHORCTX_VEC_WIDTH == 16
    // The same clamp and rounding in 3 instructions instead of 6: GCC kept the selects below as
    // compare + blend pairs (perf annotate of the native forward), and vrndscaleps rounds to
    // nearest even as the magic-number add and subtract do, so the bits do not change.
    // (The masked forms with every lane set: the plain ones start from _mm512_undefined_ps,
    // which GCC 12 reports as maybe-uninitialized.)
    const __mmask16 all = 0xFFFF;
    V xc = x;
    if constexpr (Clamp) {
      const V hi = set1(127.0f);
      const V clamped_lo = _mm512_mask_max_ps(lo, all, lo, x);  // max(lo, x): x < lo ? lo : x
      xc = _mm512_mask_min_ps(hi, all, hi, clamped_lo);
    }
    const V n =
        _mm512_mask_roundscale_ps(xc, all, xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    const V hi = set1(127.0f);
    V xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    const V magic = set1(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    const V n = (xc + magic) - magic;
#endif
    const V f = xc - n;
    V p = set1(1.535336188319500e-4f);
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
#if defined(__AVX512F__) && ANCHORCTX_VEC_WIDTH == 16
    // p * 2^n in one instruction (exact, as the product below), zeroed where x < -126: the
    // softmax loops call this on every score, and the integer exponent build cost 5 of its
    // instructions.
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), p, n);
#else
    const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
    V scale;
    std::memcpy(&scale, &bits, sizeof(V));
    const V result = p * scale;
    return x < lo ? V{} : result;
#endif
  }
};
