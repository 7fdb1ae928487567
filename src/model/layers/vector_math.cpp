// AVX-512 and scalar versions of the layers' exp loops (vector_math.h). The AVX-512 functions
// carry their own target attribute, so this file builds for any x86-64 and picks at run time.
#include "model/layers/vector_math.h"

#include <immintrin.h>

#include <cmath>
#include <limits>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/isa.h"

namespace anchorctx::model::detail {

namespace {

bool use_avx512() {
  return core::selected_isa() >= core::Isa::avx512;
}

// ---- scalar: the reference loops (std::exp) ----

float sigmoid_scalar(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}

// ---- AVX-512 ----

#define ANCHORCTX_AVX512 [[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,fma")]]

// The zero-masking forms with an all-ones mask: the plain intrinsics start from an undefined
// vector that GCC 12 reports as maybe-uninitialized.
constexpr __mmask16 kAll = 0xFFFF;

__mmask16 tail_mask(std::int64_t left) {
  return left >= 16 ? kAll : static_cast<__mmask16>((1u << left) - 1u);
}

// exp(x) for 16 floats: Cephes' expf (x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial in r,
// then r's exponential times 2^n through vscalefps, which also gives the denormal results and
// the overflow to +inf). x is clamped to [-104, 89] first (exp is 0 or +inf beyond), NaN kept.
ANCHORCTX_AVX512 inline __m512 exp16(__m512 x) {
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512 xc = _mm512_maskz_min_ps(kAll, _mm512_maskz_max_ps(kAll, x, _mm512_set1_ps(-104.0f)),
                                        _mm512_set1_ps(89.0f));
  const __m512 n =
      _mm512_maskz_roundscale_ps(kAll, _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_mask_blend_ps(nan, _mm512_maskz_scalef_ps(kAll, y, n), x);
}

ANCHORCTX_AVX512 inline __m512 sigmoid16(__m512 g) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

// core::round_to_bf16 on 16 floats: round to nearest even on the 16 dropped bits, NaN to the
// canonical quiet NaN.
ANCHORCTX_AVX512 inline __m512 round_bf16_16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll, u, 16), _mm512_set1_epi32(1));
  const __m512i r =
      _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb),
                       _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7FC00000)));
}

ANCHORCTX_AVX512 float max_of_avx512(const float* x, std::int64_t n) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    // max(x, m) returns m where x is NaN: NaNs are skipped; masked-off lanes keep m.
    m = _mm512_mask_max_ps(m, k, _mm512_maskz_loadu_ps(k, x + i), m);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, m);
  float best = lanes[0];
  for (int j = 1; j < 16; ++j)
    if (lanes[j] > best) best = lanes[j];
  return best;
}

ANCHORCTX_AVX512 double exp_shifted_sum_avx512(const float* x, std::int64_t n, float shift,
                                               float* out) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 e =
        _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), s)));
    if (out != nullptr) _mm512_mask_storeu_ps(out + i, k, e);
    lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, e, 0)));
    hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(0xFF, _mm512_maskz_extractf32x8_ps(0xFF, e, 1)));
  }
  // The sixteen lane sums added in a fixed order.
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, _mm512_add_pd(lo, hi));
  double sum = 0.0;
  for (const double v : lanes)
    sum += v;
  return sum;
}

ANCHORCTX_AVX512 void swiglu_forward_avx512(const float* gate, const float* up, std::int64_t n,
                                            bool round_bf16, float* h) {
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    __m512 s = _mm512_mul_ps(g, sigmoid16(g));
    if (round_bf16) s = round_bf16_16(s);
    __m512 v = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, up + i));
    if (round_bf16) v = round_bf16_16(v);
    _mm512_mask_storeu_ps(h + i, k, v);
  }
}

ANCHORCTX_AVX512 void swiglu_backward_avx512(const float* gate, const float* up, const float* dh,
                                             std::int64_t n, float* dgate, float* dup) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(k, gate + i);
    const __m512 d = _mm512_maskz_loadu_ps(k, dh + i);
    const __m512 sg = sigmoid16(g);
    _mm512_mask_storeu_ps(dup + i, k, _mm512_mul_ps(d, _mm512_mul_ps(g, sg)));
    const __m512 slope = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, sg)));
    const __m512 dg =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(k, up + i)), sg), slope);
    _mm512_mask_storeu_ps(dgate + i, k, dg);
  }
}

ANCHORCTX_AVX512 void round_bf16_avx512(float* p, std::int64_t n) {
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    _mm512_mask_storeu_ps(p + i, k, round_bf16_16(_mm512_maskz_loadu_ps(k, p + i)));
  }
}

ANCHORCTX_AVX512 void add_avx512(const float* a, const float* b, std::int64_t n, bool round_bf16,
                                 float* out) {
  for (std::int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i));
    if (round_bf16) v = round_bf16_16(v);
    _mm512_mask_storeu_ps(out + i, k, v);
  }
}

#undef ANCHORCTX_AVX512

}  // namespace

float max_of(const float* x, std::int64_t n) {
  if (use_avx512()) return max_of_avx512(x, n);
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i)
    if (x[i] > m) m = x[i];
  return m;
}

double exp_shifted_sum(const float* x, std::int64_t n, float shift, float* out) {
  if (use_avx512()) return exp_shifted_sum_avx512(x, n, shift, out);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float e = std::exp(x[i] - shift);
    if (out != nullptr) out[i] = e;
    sum += e;
  }
  return sum;
}

void swiglu_forward_range(const float* gate, const float* up, std::int64_t n, bool round_bf16,
                          float* h) {
  if (use_avx512()) return swiglu_forward_avx512(gate, up, n, round_bf16, h);
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    float s = g * sigmoid_scalar(g);
    if (round_bf16) s = core::round_to_bf16(s);
    const float v = s * up[i];
    h[i] = round_bf16 ? core::round_to_bf16(v) : v;
  }
}

// d silu(g)/dg = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
void swiglu_backward_range(const float* gate, const float* up, const float* dh, std::int64_t n,
                           float* dgate, float* dup) {
  if (use_avx512()) return swiglu_backward_avx512(gate, up, dh, n, dgate, dup);
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i], sg = sigmoid_scalar(g);
    const float silu = g * sg;
    dup[i] = dh[i] * silu;
    dgate[i] = dh[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
  }
}

void round_bf16_range(float* p, std::int64_t n) {
  if (use_avx512()) return round_bf16_avx512(p, n);
  for (std::int64_t i = 0; i < n; ++i)
    p[i] = core::round_to_bf16(p[i]);
}

void add_range(const float* a, const float* b, std::int64_t n, bool round_bf16, float* out) {
  if (use_avx512()) return add_avx512(a, b, n, round_bf16, out);
  for (std::int64_t i = 0; i < n; ++i) {
    const float s = a[i] + b[i];
    out[i] = round_bf16 ? core::round_to_bf16(s) : s;
  }
}

}  // namespace anchorctx::model::detail
