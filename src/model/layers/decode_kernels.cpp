// AVX-512 and plain versions of decoding's products (decode_kernels.h). The AVX-512 functions
// carry their own target attribute, so this file builds for any x86-64 and picks at run time.
#include "model/layers/decode_kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "anchorctx/core/isa.h"

namespace anchorctx::model::detail {
namespace {

constexpr int kLanes = 16;
constexpr int kBatchTile = 4;  // rows of x per pass over a weight row
constexpr std::int64_t kRowBlock = 16;

bool use_avx512() {
  return core::selected_isa() >= core::Isa::avx512;
}

// ---- plain loops: the same lanes and the same pairwise reduction, unfused ----

float reduce_lanes(const float* a) {
  float s8[8], s4[4];
  for (int j = 0; j < 8; ++j)
    s8[j] = a[j] + a[j + 8];
  for (int j = 0; j < 4; ++j)
    s4[j] = s8[j] + s8[j + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

float dot_portable(const float* w, const float* x, std::int64_t cols) {
  float acc[kLanes] = {};
  std::int64_t c = 0;
  for (; c + kLanes <= cols; c += kLanes)
    for (int j = 0; j < kLanes; ++j)
      acc[j] += w[c + j] * x[c + j];
  for (int j = 0; c + j < cols; ++j)
    acc[j] += w[c + j] * x[c + j];
  return reduce_lanes(acc);
}

void matvec_rows_portable(const float* w, std::int64_t ldw, const float* bias, std::int64_t r0,
                          std::int64_t r1, std::int64_t cols, const float* x, std::int64_t ldx,
                          std::int64_t batch, float* out, std::int64_t ldo) {
  for (std::int64_t r = r0; r < r1; ++r)
    for (std::int64_t b = 0; b < batch; ++b) {
      const float s = dot_portable(w + r * ldw, x + b * ldx, cols);
      out[b * ldo + r] = bias != nullptr ? s + bias[r] : s;
    }
}

void weighted_rows_sum_portable(const float* p, std::int64_t ldp, std::int64_t heads,
                                const float* v, std::int64_t ldv, std::int64_t length,
                                std::int64_t dim, float* out, std::int64_t ldo) {
  for (std::int64_t h = 0; h < heads; ++h) {
    float* o = out + h * ldo;
    std::fill(o, o + dim, 0.0f);
    for (std::int64_t t = 0; t < length; ++t) {
      const float pt = p[h * ldp + t];
      for (std::int64_t d = 0; d < dim; ++d)
        o[d] += pt * v[t * ldv + d];
    }
  }
}

// ---- AVX-512 ----

#define ANCHORCTX_AVX512 [[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,fma")]]

__mmask16 tail_mask(std::int64_t left) {
  return left >= kLanes ? static_cast<__mmask16>(0xFFFF)
                        : static_cast<__mmask16>((1u << left) - 1u);
}

// reduce_lanes on a vector: the same pairs in the same order.
ANCHORCTX_AVX512 inline float reduce_lanes_avx512(__m512 a) {
  // The zero-masking extracts: the plain ones start from an undefined vector that GCC 12
  // reports as uninitialized.
  const __m256 s8 = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, a, 0),
                                  _mm512_maskz_extractf32x8_ps(0xFF, a, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));  // s4[0] + s4[2], s4[1] + s4[3]
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// dots[i * NB + b] = w row (r + i) . x row b, for NR weight rows and NB rows of x: each weight
// vector loaded once for the NB products, NR * NB independent chains of fused multiply-adds.
template <int NR, int NB>
ANCHORCTX_AVX512 void dots_avx512(const float* w, std::int64_t ldw, std::int64_t cols,
                                  const float* x, std::int64_t ldx, float* dots) {
  __m512 acc[NR][NB];
  for (int i = 0; i < NR; ++i)
    for (int b = 0; b < NB; ++b)
      acc[i][b] = _mm512_setzero_ps();
  std::int64_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    __m512 xv[NB];
    for (int b = 0; b < NB; ++b)
      xv[b] = _mm512_loadu_ps(x + b * ldx + c);
    for (int i = 0; i < NR; ++i) {
      const __m512 wv = _mm512_loadu_ps(w + i * ldw + c);
      _mm_prefetch(reinterpret_cast<const char*>(w + (i + NR) * ldw + c), _MM_HINT_T0);
      for (int b = 0; b < NB; ++b)
        acc[i][b] = _mm512_fmadd_ps(wv, xv[b], acc[i][b]);
    }
  }
  if (c < cols) {  // lanes past the end keep their sums (merge masking), as the plain loop
    const __mmask16 k = tail_mask(cols - c);
    for (int i = 0; i < NR; ++i) {
      const __m512 wv = _mm512_maskz_loadu_ps(k, w + i * ldw + c);
      for (int b = 0; b < NB; ++b)
        acc[i][b] =
            _mm512_mask3_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, x + b * ldx + c), acc[i][b], k);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int b = 0; b < NB; ++b)
      dots[i * NB + b] = reduce_lanes_avx512(acc[i][b]);
}

template <int NR, int NB>
ANCHORCTX_AVX512 void store_dots_avx512(const float* w, std::int64_t ldw, const float* bias,
                                        std::int64_t r, std::int64_t cols, const float* x,
                                        std::int64_t ldx, float* out, std::int64_t ldo) {
  float dots[NR * NB];
  dots_avx512<NR, NB>(w + r * ldw, ldw, cols, x, ldx, dots);
  for (int i = 0; i < NR; ++i)
    for (int b = 0; b < NB; ++b)
      out[b * ldo + r + i] = bias != nullptr ? dots[i * NB + b] + bias[r + i] : dots[i * NB + b];
}

template <int NR>
ANCHORCTX_AVX512 void store_dots_avx512(int nb, const float* w, std::int64_t ldw, const float* bias,
                                        std::int64_t r, std::int64_t cols, const float* x,
                                        std::int64_t ldx, float* out, std::int64_t ldo) {
  switch (nb) {
    case 1:
      return store_dots_avx512<NR, 1>(w, ldw, bias, r, cols, x, ldx, out, ldo);
    case 2:
      return store_dots_avx512<NR, 2>(w, ldw, bias, r, cols, x, ldx, out, ldo);
    case 3:
      return store_dots_avx512<NR, 3>(w, ldw, bias, r, cols, x, ldx, out, ldo);
    default:
      return store_dots_avx512<NR, 4>(w, ldw, bias, r, cols, x, ldx, out, ldo);
  }
}

ANCHORCTX_AVX512 void matvec_rows_avx512(const float* w, std::int64_t ldw, const float* bias,
                                         std::int64_t r0, std::int64_t r1, std::int64_t cols,
                                         const float* x, std::int64_t ldx, std::int64_t batch,
                                         float* out, std::int64_t ldo) {
  for (std::int64_t b0 = 0; b0 < batch; b0 += kBatchTile) {
    const int nb = static_cast<int>(std::min<std::int64_t>(kBatchTile, batch - b0));
    const float* xb = x + b0 * ldx;
    float* ob = out + b0 * ldo;
    std::int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
      store_dots_avx512<4>(nb, w, ldw, bias, r, cols, xb, ldx, ob, ldo);
    for (; r < r1; ++r)
      store_dots_avx512<1>(nb, w, ldw, bias, r, cols, xb, ldx, ob, ldo);
  }
}

// out[h, d0 + 16 ND) for NH heads: ND vectors of dims, each summed over t in order.
template <int NH, int ND>
ANCHORCTX_AVX512 void weighted_block_avx512(const float* p, std::int64_t ldp, const float* v,
                                            std::int64_t ldv, std::int64_t length,
                                            std::int64_t dims, float* out, std::int64_t ldo) {
  __mmask16 k[ND];
  for (int j = 0; j < ND; ++j)
    k[j] = tail_mask(dims - j * kLanes);
  __m512 acc[NH][ND];
  for (int h = 0; h < NH; ++h)
    for (int j = 0; j < ND; ++j)
      acc[h][j] = _mm512_setzero_ps();
  for (std::int64_t t = 0; t < length; ++t) {
    __m512 vv[ND];
    for (int j = 0; j < ND; ++j)
      vv[j] = _mm512_maskz_loadu_ps(k[j], v + t * ldv + j * kLanes);
    for (int h = 0; h < NH; ++h) {
      const __m512 ph = _mm512_set1_ps(p[h * ldp + t]);
      for (int j = 0; j < ND; ++j)
        acc[h][j] = _mm512_fmadd_ps(ph, vv[j], acc[h][j]);
    }
  }
  for (int h = 0; h < NH; ++h)
    for (int j = 0; j < ND; ++j)
      _mm512_mask_storeu_ps(out + h * ldo + j * kLanes, k[j], acc[h][j]);
}

template <int NH>
ANCHORCTX_AVX512 void weighted_block_avx512(int nd, const float* p, std::int64_t ldp,
                                            const float* v, std::int64_t ldv, std::int64_t length,
                                            std::int64_t dims, float* out, std::int64_t ldo) {
  switch (nd) {
    case 1:
      return weighted_block_avx512<NH, 1>(p, ldp, v, ldv, length, dims, out, ldo);
    case 2:
      return weighted_block_avx512<NH, 2>(p, ldp, v, ldv, length, dims, out, ldo);
    case 3:
      return weighted_block_avx512<NH, 3>(p, ldp, v, ldv, length, dims, out, ldo);
    default:
      return weighted_block_avx512<NH, 4>(p, ldp, v, ldv, length, dims, out, ldo);
  }
}

ANCHORCTX_AVX512 void weighted_rows_sum_avx512(const float* p, std::int64_t ldp, std::int64_t heads,
                                               const float* v, std::int64_t ldv,
                                               std::int64_t length, std::int64_t dim, float* out,
                                               std::int64_t ldo) {
  constexpr std::int64_t kDimBlock = 4 * kLanes;
  for (std::int64_t d0 = 0; d0 < dim; d0 += kDimBlock) {
    const std::int64_t dims = std::min(kDimBlock, dim - d0);
    const int nd = static_cast<int>((dims + kLanes - 1) / kLanes);
    // Up to four heads per pass over the values (a GQA group of four reads them once).
    for (std::int64_t h = 0; h < heads; h += 4) {
      const float* ph = p + h * ldp;
      float* oh = out + h * ldo + d0;
      switch (std::min<std::int64_t>(4, heads - h)) {
        case 1:
          weighted_block_avx512<1>(nd, ph, ldp, v + d0, ldv, length, dims, oh, ldo);
          break;
        case 2:
          weighted_block_avx512<2>(nd, ph, ldp, v + d0, ldv, length, dims, oh, ldo);
          break;
        case 3:
          weighted_block_avx512<3>(nd, ph, ldp, v + d0, ldv, length, dims, oh, ldo);
          break;
        default:
          weighted_block_avx512<4>(nd, ph, ldp, v + d0, ldv, length, dims, oh, ldo);
      }
    }
  }
}

#undef ANCHORCTX_AVX512

}  // namespace

void batched_matvec(const float* w, std::int64_t ldw, const float* bias, std::int64_t rows,
                    std::int64_t cols, const float* x, std::int64_t ldx, std::int64_t batch,
                    float* out, std::int64_t ldo, bool parallel) {
  if (rows <= 0 || batch <= 0) return;
  const bool avx512 = use_avx512();
  const auto run = [&](std::int64_t r0, std::int64_t r1) {
    if (avx512)
      matvec_rows_avx512(w, ldw, bias, r0, r1, cols, x, ldx, batch, out, ldo);
    else
      matvec_rows_portable(w, ldw, bias, r0, r1, cols, x, ldx, batch, out, ldo);
  };
  // Which thread sums an element changes nothing in it: each is one call's fixed loop.
  const std::int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  const bool threads = parallel && blocks > 1 && rows * cols * batch >= (std::int64_t{1} << 16) &&
                       !omp_in_parallel();
#pragma omp parallel for schedule(static) if (threads)
  for (std::int64_t i = 0; i < blocks; ++i)
    run(i * kRowBlock, std::min(rows, (i + 1) * kRowBlock));
}

void weighted_rows_sum(const float* p, std::int64_t ldp, std::int64_t heads, const float* v,
                       std::int64_t ldv, std::int64_t length, std::int64_t dim, float* out,
                       std::int64_t ldo) {
  if (heads <= 0 || dim <= 0) return;
  if (use_avx512())
    weighted_rows_sum_avx512(p, ldp, heads, v, ldv, length, dim, out, ldo);
  else
    weighted_rows_sum_portable(p, ldp, heads, v, ldv, length, dim, out, ldo);
}

}  // namespace anchorctx::model::detail
