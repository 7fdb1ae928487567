// AVX-512, AVX2 and plain versions of decoding's products (decode_kernels.h). The vector
// functions carry their own target attributes, so this file builds for any x86-64 and picks at
// run time (core/isa.h).
#include "model/layers/decode_kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>

#include "anchorctx/core/isa.h"

namespace anchorctx::model::detail {
namespace {

constexpr int kLanes = 16;
constexpr int kBatchTile = 4;           // rows of x per pass over a weight row
constexpr std::int64_t kRowBlock = 16;  // weight rows per work item of the threads

core::Isa isa() {
  return core::selected_isa();
}

// f.template operator()<N>() for N = n clamped to [1, 4]: the vector loops take their tile sizes
// (rows of x, heads, vectors of dims) as template arguments, which keeps their accumulators in
// registers.
template <class F>
void with_tile(std::int64_t n, F&& f) {
  switch (std::clamp<std::int64_t>(n, 1, 4)) {
    case 1:
      return f.template operator()<1>();
    case 2:
      return f.template operator()<2>();
    case 3:
      return f.template operator()<3>();
    default:
      return f.template operator()<4>();
  }
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

// A weight as float32: bf16 bits widen exactly (the high half of a float32).
inline float widen(float w) {
  return w;
}
inline float widen(std::uint16_t w) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(w) << 16);
}

template <class W>
float dot_portable(const W* w, const float* x, std::int64_t cols) {
  float acc[kLanes] = {};
  std::int64_t c = 0;
  for (; c + kLanes <= cols; c += kLanes)
    for (int j = 0; j < kLanes; ++j)
      acc[j] += widen(w[c + j]) * x[c + j];
  for (int j = 0; c + j < cols; ++j)
    acc[j] += widen(w[c + j]) * x[c + j];
  return reduce_lanes(acc);
}

template <class W>
void matvec_rows_portable(const W* w, std::int64_t ldw, const float* bias, std::int64_t r0,
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

// Sixteen weights as float32 (bf16 bits widened exactly), all or the lanes of k (others 0).
ANCHORCTX_AVX512 inline __m512 load16(const float* p) {
  return _mm512_loadu_ps(p);
}
// (The zero-masking forms with all lanes: the plain ones start from an undefined vector that
// GCC 12 reports as uninitialized.)
ANCHORCTX_AVX512 inline __m512 widen16(__m256i bits) {
  const __m512i wide = _mm512_maskz_cvtepu16_epi32(0xFFFF, bits);
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, wide, 16));
}
ANCHORCTX_AVX512 inline __m512 load16(const std::uint16_t* p) {
  return widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
ANCHORCTX_AVX512 inline __m512 load16(__mmask16 k, const float* p) {
  return _mm512_maskz_loadu_ps(k, p);
}
ANCHORCTX_AVX512 inline __m512 load16(__mmask16 k, const std::uint16_t* p) {
  return widen16(_mm256_maskz_loadu_epi16(k, p));
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

// dots[b] = w row . x row b for NB rows of x: the weight row streamed once, in order (one row
// at a time reads memory fastest: the hardware prefetcher sees one stream; interleaving four rows
// with software prefetches measured 20-40% slower), NB independent chains of fused multiply-adds.
template <int NB, class W>
ANCHORCTX_AVX512 void dots_avx512(const W* w, std::int64_t cols, const float* x, std::int64_t ldx,
                                  float* dots) {
  __m512 acc[NB];
  for (int b = 0; b < NB; ++b)
    acc[b] = _mm512_setzero_ps();
  std::int64_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    const __m512 wv = load16(w + c);
    for (int b = 0; b < NB; ++b)
      acc[b] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + b * ldx + c), acc[b]);
  }
  if (c < cols) {  // lanes past the end keep their sums (merge masking), as the plain loop
    const __mmask16 k = tail_mask(cols - c);
    const __m512 wv = load16(k, w + c);
    for (int b = 0; b < NB; ++b)
      acc[b] = _mm512_mask3_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, x + b * ldx + c), acc[b], k);
  }
  for (int b = 0; b < NB; ++b)
    dots[b] = reduce_lanes_avx512(acc[b]);
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

// Up to four heads per pass over the values (a GQA group of four reads them once), 64 dims.
void weighted_rows_sum_avx512(const float* p, std::int64_t ldp, std::int64_t heads, const float* v,
                              std::int64_t ldv, std::int64_t length, std::int64_t dim, float* out,
                              std::int64_t ldo) {
  constexpr std::int64_t kDimBlock = 4 * kLanes;
  for (std::int64_t d0 = 0; d0 < dim; d0 += kDimBlock) {
    const std::int64_t dims = std::min(kDimBlock, dim - d0);
    for (std::int64_t h = 0; h < heads; h += 4)
      with_tile(heads - h, [&]<int NH>() {
        with_tile((dims + kLanes - 1) / kLanes, [&]<int ND>() {
          weighted_block_avx512<NH, ND>(p + h * ldp, ldp, v + d0, ldv, length, dims,
                                        out + h * ldo + d0, ldo);
        });
      });
  }
}

#undef ANCHORCTX_AVX512

// ---- AVX2: the AVX-512 path's lanes as two halves of eight, the same fused operations and the
// same pairwise reduction, hence the same bits ----

#define ANCHORCTX_AVX2 [[gnu::target("avx2,fma")]]

// Lanes [0, left) of a half of eight set (left may be <= 0 or >= 8).
ANCHORCTX_AVX2 inline __m256i half_mask(std::int64_t left) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int n = static_cast<int>(std::clamp<std::int64_t>(left, 0, 8));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}

// Eight weights as float32 (bf16 bits widened exactly), all or those before `left` (others 0).
ANCHORCTX_AVX2 inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
ANCHORCTX_AVX2 inline __m256 load8(const std::uint16_t* p) {
  const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
ANCHORCTX_AVX2 inline __m256 load8(const float* p, std::int64_t left) {
  return _mm256_maskload_ps(p, half_mask(left));
}
ANCHORCTX_AVX2 inline __m256 load8(const std::uint16_t* p, std::int64_t left) {
  std::uint16_t part[8] = {};  // AVX2 has no 16-bit masked load
  std::copy_n(p, std::clamp<std::int64_t>(left, 0, 8), part);
  return load8(part);
}

// reduce_lanes on lanes lo [0, 8) and hi [8, 16).
ANCHORCTX_AVX2 inline float reduce_lanes_avx2(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// dots_avx512 in halves: NB rows of x, each sum in two registers of eight lanes.
template <int NB, class W>
ANCHORCTX_AVX2 void dots_avx2(const W* w, std::int64_t cols, const float* x, std::int64_t ldx,
                              float* dots) {
  __m256 lo[NB], hi[NB];
  for (int b = 0; b < NB; ++b)
    lo[b] = hi[b] = _mm256_setzero_ps();
  std::int64_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    const __m256 wl = load8(w + c), wh = load8(w + c + 8);
    for (int b = 0; b < NB; ++b) {
      lo[b] = _mm256_fmadd_ps(wl, _mm256_loadu_ps(x + b * ldx + c), lo[b]);
      hi[b] = _mm256_fmadd_ps(wh, _mm256_loadu_ps(x + b * ldx + c + 8), hi[b]);
    }
  }
  if (c < cols) {  // lanes past the end keep their sums, as the other paths
    const __m256i ml = half_mask(cols - c), mh = half_mask(cols - c - 8);
    const __m256 wl = load8(w + c, cols - c), wh = load8(w + c + 8, cols - c - 8);
    for (int b = 0; b < NB; ++b) {
      const __m256 xl = _mm256_maskload_ps(x + b * ldx + c, ml);
      const __m256 xh = _mm256_maskload_ps(x + b * ldx + c + 8, mh);
      lo[b] = _mm256_blendv_ps(lo[b], _mm256_fmadd_ps(wl, xl, lo[b]), _mm256_castsi256_ps(ml));
      hi[b] = _mm256_blendv_ps(hi[b], _mm256_fmadd_ps(wh, xh, hi[b]), _mm256_castsi256_ps(mh));
    }
  }
  for (int b = 0; b < NB; ++b)
    dots[b] = reduce_lanes_avx2(lo[b], hi[b]);
}

// weighted_block_avx512 in halves of eight: NH heads, two halves (16 dims) per pass.
template <int NH>
ANCHORCTX_AVX2 void weighted_block_avx2(const float* p, std::int64_t ldp, const float* v,
                                        std::int64_t ldv, std::int64_t length, std::int64_t dims,
                                        float* out, std::int64_t ldo) {
  const __m256i ml = half_mask(dims), mh = half_mask(dims - 8);
  __m256 lo[NH], hi[NH];
  for (int h = 0; h < NH; ++h)
    lo[h] = hi[h] = _mm256_setzero_ps();
  for (std::int64_t t = 0; t < length; ++t) {
    const __m256 vl = _mm256_maskload_ps(v + t * ldv, ml);
    const __m256 vh = _mm256_maskload_ps(v + t * ldv + 8, mh);
    for (int h = 0; h < NH; ++h) {
      const __m256 ph = _mm256_set1_ps(p[h * ldp + t]);
      lo[h] = _mm256_fmadd_ps(ph, vl, lo[h]);
      hi[h] = _mm256_fmadd_ps(ph, vh, hi[h]);
    }
  }
  for (int h = 0; h < NH; ++h) {
    _mm256_maskstore_ps(out + h * ldo, ml, lo[h]);
    _mm256_maskstore_ps(out + h * ldo + 8, mh, hi[h]);
  }
}

void weighted_rows_sum_avx2(const float* p, std::int64_t ldp, std::int64_t heads, const float* v,
                            std::int64_t ldv, std::int64_t length, std::int64_t dim, float* out,
                            std::int64_t ldo) {
  for (std::int64_t d0 = 0; d0 < dim; d0 += kLanes)
    for (std::int64_t h = 0; h < heads; h += 4)
      with_tile(heads - h, [&]<int NH>() {
        weighted_block_avx2<NH>(p + h * ldp, ldp, v + d0, ldv, length,
                                std::min<std::int64_t>(kLanes, dim - d0), out + h * ldo + d0, ldo);
      });
}

#undef ANCHORCTX_AVX2

// Rows [r0, r1) of out = x w^T (+ bias) for NB rows of x: one call of an ISA's `dots` per
// weight row. The call stays out of line (a generic function cannot inline a target-specific
// one), as it did in the per-ISA copies of this loop this replaces (their disassembly).
template <int NB, class W, auto Dots>
void matvec_tile(const W* w, std::int64_t ldw, const float* bias, std::int64_t r0, std::int64_t r1,
                 std::int64_t cols, const float* x, std::int64_t ldx, float* out,
                 std::int64_t ldo) {
  for (std::int64_t r = r0; r < r1; ++r) {
    float dots[NB];
    Dots(w + r * ldw, cols, x, ldx, dots);
    for (int b = 0; b < NB; ++b)
      out[b * ldo + r] = bias != nullptr ? dots[b] + bias[r] : dots[b];
  }
}

template <class W>
void matvec(const W* w, std::int64_t ldw, const float* bias, std::int64_t rows, std::int64_t cols,
            const float* x, std::int64_t ldx, std::int64_t batch, float* out, std::int64_t ldo,
            bool parallel) {
  if (rows <= 0 || batch <= 0) return;
  const core::Isa path = isa();
  // Rows [r0, r1) for every row of x, in tiles of up to kBatchTile rows of x.
  const auto run = [&](std::int64_t r0, std::int64_t r1) {
    if (path == core::Isa::portable)
      return matvec_rows_portable(w, ldw, bias, r0, r1, cols, x, ldx, batch, out, ldo);
    for (std::int64_t b0 = 0; b0 < batch; b0 += kBatchTile)
      with_tile(batch - b0, [&]<int NB>() {
        if (path == core::Isa::avx512)
          matvec_tile<NB, W, dots_avx512<NB, W>>(w, ldw, bias, r0, r1, cols, x + b0 * ldx, ldx,
                                                 out + b0 * ldo, ldo);
        else
          matvec_tile<NB, W, dots_avx2<NB, W>>(w, ldw, bias, r0, r1, cols, x + b0 * ldx, ldx,
                                               out + b0 * ldo, ldo);
      });
  };
  // Which thread sums an element changes nothing in it: each is one call's fixed loop.
  const std::int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  const bool threads = parallel && blocks > 1 && rows * cols * batch >= (std::int64_t{1} << 16) &&
                       !omp_in_parallel();
#pragma omp parallel for schedule(static) if (threads)
  for (std::int64_t i = 0; i < blocks; ++i)
    run(i * kRowBlock, std::min(rows, (i + 1) * kRowBlock));
}

}  // namespace

void batched_matvec(const float* w, std::int64_t ldw, const float* bias, std::int64_t rows,
                    std::int64_t cols, const float* x, std::int64_t ldx, std::int64_t batch,
                    float* out, std::int64_t ldo, bool parallel) {
  matvec(w, ldw, bias, rows, cols, x, ldx, batch, out, ldo, parallel);
}

void batched_matvec(const std::uint16_t* w, std::int64_t ldw, const float* bias, std::int64_t rows,
                    std::int64_t cols, const float* x, std::int64_t ldx, std::int64_t batch,
                    float* out, std::int64_t ldo, bool parallel) {
  matvec(w, ldw, bias, rows, cols, x, ldx, batch, out, ldo, parallel);
}

void weighted_rows_sum(const float* p, std::int64_t ldp, std::int64_t heads, const float* v,
                       std::int64_t ldv, std::int64_t length, std::int64_t dim, float* out,
                       std::int64_t ldo) {
  if (heads <= 0 || dim <= 0) return;
  switch (isa()) {
    case core::Isa::avx512:
      return weighted_rows_sum_avx512(p, ldp, heads, v, ldv, length, dim, out, ldo);
    case core::Isa::avx2:
      return weighted_rows_sum_avx2(p, ldp, heads, v, ldv, length, dim, out, ldo);
    case core::Isa::portable:
      return weighted_rows_sum_portable(p, ldp, heads, v, ldv, length, dim, out, ldo);
  }
}

}  // namespace anchorctx::model::detail
