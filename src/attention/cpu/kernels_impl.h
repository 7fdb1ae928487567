// The CPU attention kernels, written once and compiled once per instruction set: a kernel TU
// defines ANCHORCTX_ISA (a namespace name), ANCHORCTX_VEC_WIDTH, ANCHORCTX_GEMM_ROWS and
// ANCHORCTX_GEMM_VECS, then includes this file. Everything below lands in
// anchorctx::attention::cpu::ANCHORCTX_ISA, so the copies never share a symbol.
//
// The algorithm is FlashAttention-2 on CPU tiles, driven by the BlockPlan:
// - forward (algorithm 1): one work item per (query tile, kv head); for each key tile the plan
//   lists, S = Q K^T, mask (partial tiles only), online softmax, O += P V; the row log-sum-exp
//   is saved for the backward.
// - backward (algorithm 2): one work item per (sequence, kv head); for each key tile of the
//   sequence and each query tile that sees it: recompute P from the saved lse, then dV, dP,
//   dS, dK, and dQ. The item owns every dQ row of its heads in its sequence, so dQ is summed
//   without atomics, in plan order: bit-identical for any thread count.
// Scores are kept in base 2: Q is pre-scaled by scale * log2(e), so softmax uses exp2.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <vector>

#include "anchorctx/attention/kernels.h"
#include "anchorctx/core/bf16.h"
#include "attention/cpu/cpu_kernels.h"

namespace anchorctx::attention::cpu::ANCHORCTX_ISA {

#include "attention/cpu/simd.h"
#include "attention/cpu/tile_gemm.h"

namespace {

using S = Simd;
using V = S::V;
constexpr int W = S::W;
using Gemm = TileGemm<ANCHORCTX_GEMM_ROWS, ANCHORCTX_GEMM_VECS>;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int round_up(int x, int multiple) { return (x + multiple - 1) / multiple * multiple; }

// Float buffers carved out of one 64-byte aligned allocation per thread.
class Workspace {
 public:
  explicit Workspace(std::initializer_list<std::size_t> sizes) {
    std::size_t total = 0;
    for (std::size_t n : sizes) total += (n + 15) / 16 * 16;
    data_.reset(static_cast<float*>(std::aligned_alloc(64, std::max<std::size_t>(total, 16) * 4)));
    std::fill_n(data_.get(), total, 0.0f);
    std::size_t offset = 0;
    for (std::size_t n : sizes) {
      parts_.push_back(data_.get() + offset);
      offset += (n + 15) / 16 * 16;
    }
  }
  float* operator[](std::size_t i) const { return parts_[i]; }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  std::vector<float*> parts_;
};

// Per-thread tiles of the forward pass.
struct ForwardTiles {
  ForwardTiles(int group, int ts, int tsp, int Dp)
      : ws({std::size_t(group) * ts * Dp, std::size_t(group) * ts * Dp, std::size_t(group) * ts,
            std::size_t(group) * ts, std::size_t(Dp) * tsp, std::size_t(ts) * Dp,
            std::size_t(ts) * tsp}),
        q(ws[0]), o(ws[1]), row_max(ws[2]), row_sum(ws[3]), kt(ws[4]), v(ws[5]), s(ws[6]) {}
  Workspace ws;
  float *q, *o, *row_max, *row_sum, *kt, *v, *s;
};

// --- element access: tensors are float32 or bf16 bits --------------------------------------

inline float to_f32(float x) { return x; }
inline float to_f32(std::uint16_t bits) { return core::bf16_bits_to_float(bits); }
inline void from_f32(float x, float* dst) { *dst = x; }
inline void from_f32(float x, std::uint16_t* dst) { *dst = core::float_to_bf16_bits(x); }

// Rows [0, rows) of a [*, D] slice with row stride `stride` into a dense [rows, Dp] tile,
// times `mul`; columns [D, Dp) are zero.
template <typename T>
void load_rows(const T* src, std::ptrdiff_t stride, int rows, int D, int Dp, float mul,
               float* dst) {
  for (int r = 0; r < rows; ++r) {
    const T* s = src + r * stride;
    float* d = dst + r * Dp;
    for (int c = 0; c < D; ++c) d[c] = to_f32(s[c]) * mul;
    for (int c = D; c < Dp; ++c) d[c] = 0.0f;
  }
}

// The transpose: [rows, D] slice -> [Dp, cols_padded] tile, columns [rows, cols_padded) zero.
template <typename T>
void load_transposed(const T* src, std::ptrdiff_t stride, int rows, int D, int Dp,
                     int cols_padded, float* dst) {
  for (int d = 0; d < Dp; ++d) std::fill_n(dst + d * cols_padded + rows, cols_padded - rows, 0.0f);
  for (int d = D; d < Dp; ++d) std::fill_n(dst + d * cols_padded, rows, 0.0f);
  for (int r = 0; r < rows; ++r) {
    const T* s = src + r * stride;
    for (int d = 0; d < D; ++d) dst[d * cols_padded + r] = to_f32(s[d]);
  }
}

// --- masking --------------------------------------------------------------------------------

// Which key columns [0, n) of a key tile starting at local column c0 the local query row q
// sees: [lo, hi) plus the anchor columns [0, anchor_hi). Columns >= n are never visible.
struct RowSpan {
  int lo, hi, anchor_hi;
};

RowSpan visible_span(const AttentionLayout& layout, MaskKind mask, int seq, std::int32_t q,
                     std::int32_t c0, int n) {
  const int hi = std::clamp<std::int32_t>(q - c0 + 1, 0, n);
  if (mask == MaskKind::causal) return {0, hi, 0};
  const int lo = std::clamp<std::int32_t>(layout.doc_start_of(seq, q) - c0, 0, hi);
  const int anchor_hi =
      mask == MaskKind::anchor ? std::clamp<std::int32_t>(layout.anchor_len(seq) - c0, 0, hi) : 0;
  return {lo, hi, anchor_hi};
}

// Sets the scores a row does not see to -inf (columns [0, width)).
void mask_row(float* s, int width, RowSpan span) {
  for (int c = span.anchor_hi; c < span.lo; ++c) s[c] = kNegInf;
  for (int c = std::max(span.hi, span.anchor_hi); c < width; ++c) s[c] = kNegInf;
}

// --- forward ----------------------------------------------------------------------------------

// One query tile against all its key tiles, for the query heads of one kv head.
template <typename T>
void forward_item(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                  float scale, int q_tile, int kv_head, ForwardTiles& tiles) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size();
  const int group = dims.heads_q / dims.heads_kv;
  const std::ptrdiff_t q_stride = static_cast<std::ptrdiff_t>(dims.heads_q) * D;
  const std::ptrdiff_t kv_stride = static_cast<std::ptrdiff_t>(dims.heads_kv) * D;
  const Tile& qt = plan.tile(q_tile);
  const int m = qt.size();
  const AttentionLayout& layout = plan.layout();
  const std::int32_t seq_base = layout.seq_begin(qt.seq);

  float *q_s = tiles.q, *o_s = tiles.o, *row_max = tiles.row_max, *row_sum = tiles.row_sum;
  float *kt_s = tiles.kt, *v_s = tiles.v, *s_s = tiles.s;

  const T* q = static_cast<const T*>(t.q);
  const T* k = static_cast<const T*>(t.k);
  const T* v = static_cast<const T*>(t.v);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    load_rows(q + qt.begin * q_stride + h * D, q_stride, m, D, Dp, scale * kLog2e,
              q_s + g * ts * Dp);
    std::fill_n(o_s + g * ts * Dp, m * Dp, 0.0f);
    std::fill_n(row_max + g * ts, m, kNegInf);
    std::fill_n(row_sum + g * ts, m, 0.0f);
  }

  for (const TileRef& ref : plan.kv_tiles_of(q_tile)) {
    const Tile& kt = plan.tile(ref.tile);
    const int n = kt.size(), nw = round_up(n, W);
    load_transposed(k + kt.begin * kv_stride + kv_head * D, kv_stride, n, D, Dp, nw, kt_s);
    load_rows(v + kt.begin * kv_stride + kv_head * D, kv_stride, n, D, Dp, 1.0f, v_s);
    const bool needs_mask = ref.kind == TileKind::partial || n != nw;

    for (int g = 0; g < group; ++g) {
      float* o = o_s + g * ts * Dp;
      // S = (scale * log2e * Q) K^T  [m, nw]
      Gemm::run(m, nw, Dp, q_s + g * ts * Dp, Dp, 1, kt_s, nw, s_s, nw, false);
      for (int r = 0; r < m; ++r) {
        float* s = s_s + r * nw;
        if (needs_mask) {
          if (ref.kind == TileKind::partial) {
            mask_row(s, nw, visible_span(layout, plan.mask(), qt.seq, qt.begin + r - seq_base,
                                         kt.begin - seq_base, n));
          } else {
            std::fill(s + n, s + nw, kNegInf);
          }
        }
        // Online softmax: new running max, rescale the old sum and output row.
        V vmax = S::set1(kNegInf);
        for (int c = 0; c < nw; c += W) vmax = S::max(vmax, S::load(s + c));
        const float old_max = row_max[g * ts + r];
        const float new_max = std::max(old_max, S::reduce_max(vmax));
        if (new_max == kNegInf) {  // nothing visible in this row so far: P = 0
          std::fill_n(s, nw, 0.0f);
          continue;
        }
        const V vm = S::set1(new_max);
        V vsum{};
        for (int c = 0; c < nw; c += W) {
          const V p = S::exp2(S::load(s + c) - vm);
          S::store(s + c, p);
          vsum += p;
        }
        const float alpha = std::exp2(old_max - new_max);  // 0 when old_max is -inf
        row_sum[g * ts + r] = row_sum[g * ts + r] * alpha + S::reduce_sum(vsum);
        row_max[g * ts + r] = new_max;
        if (alpha != 1.0f) {
          const V va = S::set1(alpha);
          for (int c = 0; c < Dp; c += W) S::store(o + r * Dp + c, S::load(o + r * Dp + c) * va);
        }
      }
      // O += P V  [m, Dp]
      Gemm::run(m, Dp, n, s_s, nw, 1, v_s, Dp, o, Dp, true);
    }
  }

  T* out = static_cast<T*>(t.out);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    for (int r = 0; r < m; ++r) {
      const float sum = row_sum[g * ts + r];
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const float* o = o_s + (g * ts + r) * Dp;
      T* dst = out + (qt.begin + r) * q_stride + h * D;
      for (int c = 0; c < D; ++c) from_f32(o[c] * inv, dst + c);
      t.lse[static_cast<std::ptrdiff_t>(h) * layout.total_tokens() + qt.begin + r] =
          sum > 0.0f ? (row_max[g * ts + r] + std::log2(sum)) * kLn2 : kNegInf;
    }
  }
}

template <typename T>
void forward_typed(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                   float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const int group = dims.heads_q / dims.heads_kv;
  const std::int64_t tiles = plan.num_tiles();
  const std::int64_t items = tiles * dims.heads_kv;
#pragma omp parallel num_threads(threads)
  {
    ForwardTiles tiles_of_thread(group, ts, tsp, Dp);
    // Later tiles of a causal sequence see the most keys: start with them for balance.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = items - 1; item >= 0; --item) {
      forward_item<T>(plan, dims, t, scale, static_cast<int>(item / dims.heads_kv),
                      static_cast<int>(item % dims.heads_kv), tiles_of_thread);
    }
  }
}

// --- backward ---------------------------------------------------------------------------------

// Per-thread tiles of the backward pass.
struct BackwardTiles {
  BackwardTiles(int ts, int tsp, int Dp)
      : ws({std::size_t(ts) * Dp, std::size_t(Dp) * tsp, std::size_t(Dp) * tsp,
            std::size_t(ts) * Dp, std::size_t(ts) * Dp, std::size_t(ts) * Dp,
            std::size_t(ts) * Dp, std::size_t(ts) * tsp, std::size_t(ts) * tsp,
            std::size_t(ts), std::size_t(ts)}),
        k(ws[0]), kt(ws[1]), vt(ws[2]), dk(ws[3]), dv(ws[4]), q(ws[5]), dout(ws[6]), p(ws[7]),
        ds(ws[8]), lse2(ws[9]), delta(ws[10]) {}
  Workspace ws;
  float *k, *kt, *vt, *dk, *dv, *q, *dout, *p, *ds, *lse2, *delta;
};

// All key tiles of one sequence for one kv head: dK and dV of those rows, and the dQ
// contributions (into the float32 accumulator dq_acc [T, Hq, Dp]) of the query heads of the
// group. `delta` is rowsum(dO * O) [Hq, T].
template <typename T>
void backward_item(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                   float scale, const float* delta, float* dq_acc, int seq, int kv_head,
                   BackwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size();
  const int group = dims.heads_q / dims.heads_kv;
  const std::ptrdiff_t q_stride = static_cast<std::ptrdiff_t>(dims.heads_q) * D;
  const std::ptrdiff_t kv_stride = static_cast<std::ptrdiff_t>(dims.heads_kv) * D;
  const std::ptrdiff_t acc_stride = static_cast<std::ptrdiff_t>(dims.heads_q) * Dp;
  const AttentionLayout& layout = plan.layout();
  const std::int64_t T_total = layout.total_tokens();
  const std::int32_t seq_base = layout.seq_begin(seq);
  const float score_scale = scale * kLog2e;
  const T* q = static_cast<const T*>(t.q);
  const T* k = static_cast<const T*>(t.k);
  const T* v = static_cast<const T*>(t.v);
  const T* dout = static_cast<const T*>(t.dout);

  for (int j = plan.first_tile(seq); j < plan.first_tile(seq + 1); ++j) {
    const Tile& kt = plan.tile(j);
    const int n = kt.size(), nw = round_up(n, W);
    if (plan.q_tiles_of(j).empty()) continue;
    load_rows(k + kt.begin * kv_stride + kv_head * D, kv_stride, n, D, Dp, 1.0f, w.k);
    load_transposed(k + kt.begin * kv_stride + kv_head * D, kv_stride, n, D, Dp, nw, w.kt);
    load_transposed(v + kt.begin * kv_stride + kv_head * D, kv_stride, n, D, Dp, nw, w.vt);
    bool first_contribution = true;  // dK, dV start at zero: the first product overwrites

    for (const TileRef& ref : plan.q_tiles_of(j)) {
      const Tile& qt = plan.tile(ref.tile);
      const int m = qt.size();
      const bool needs_mask = ref.kind == TileKind::partial || n != nw;
      for (int g = 0; g < group; ++g) {
        const int h = kv_head * group + g;
        load_rows(q + qt.begin * q_stride + h * D, q_stride, m, D, Dp, 1.0f, w.q);
        load_rows(dout + qt.begin * q_stride + h * D, q_stride, m, D, Dp, 1.0f, w.dout);
        for (int r = 0; r < m; ++r) {
          const float lse = t.lse[h * T_total + qt.begin + r];
          // A row that sees nothing has lse = -inf; +inf here makes its P exactly 0.
          w.lse2[r] = lse == kNegInf ? std::numeric_limits<float>::infinity() : lse * kLog2e;
          w.delta[r] = delta[h * T_total + qt.begin + r];
        }
        // S = Q K^T, then P = exp2(scale * log2e * S - lse * log2e), masked entries 0.
        Gemm::run(m, nw, Dp, w.q, Dp, 1, w.kt, nw, w.p, nw, false);
        for (int r = 0; r < m; ++r) {
          float* p = w.p + r * nw;
          const V vs = S::set1(score_scale), vl = S::set1(w.lse2[r]);
          if (needs_mask) {
            const RowSpan span =
                ref.kind == TileKind::partial
                    ? visible_span(layout, plan.mask(), seq, qt.begin + r - seq_base,
                                   kt.begin - seq_base, n)
                    : RowSpan{0, n, 0};
            mask_row(p, nw, span);
          }
          for (int c = 0; c < nw; c += W) S::store(p + c, S::exp2(S::load(p + c) * vs - vl));
        }
        // dV += P^T dO  [n, Dp]
        Gemm::run(n, Dp, m, w.p, 1, nw, w.dout, Dp, w.dv, Dp, !first_contribution);
        // dP = dO V^T  [m, nw], then dS = P * (dP - delta) in place.
        Gemm::run(m, nw, Dp, w.dout, Dp, 1, w.vt, nw, w.ds, nw, false);
        for (int r = 0; r < m; ++r) {
          const V vd = S::set1(w.delta[r]);
          float* ds = w.ds + r * nw;
          const float* p = w.p + r * nw;
          for (int c = 0; c < nw; c += W) S::store(ds + c, S::load(p + c) * (S::load(ds + c) - vd));
        }
        // dK += dS^T Q  [n, Dp];  dQ += dS K  [m, Dp]
        Gemm::run(n, Dp, m, w.ds, 1, nw, w.q, Dp, w.dk, Dp, !first_contribution);
        Gemm::run(m, Dp, n, w.ds, nw, 1, w.k, Dp, dq_acc + qt.begin * acc_stride + h * Dp,
                  acc_stride, true);
        first_contribution = false;
      }
    }

    T* dk = static_cast<T*>(t.dk);
    T* dv = static_cast<T*>(t.dv);
    for (int r = 0; r < n; ++r) {
      T* dk_row = dk + (kt.begin + r) * kv_stride + kv_head * D;
      T* dv_row = dv + (kt.begin + r) * kv_stride + kv_head * D;
      for (int c = 0; c < D; ++c) {
        from_f32(w.dk[r * Dp + c] * scale, dk_row + c);
        from_f32(w.dv[r * Dp + c], dv_row + c);
      }
    }
  }
  (void)ts;
}

template <typename T>
void backward_typed(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                    float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const std::int64_t T_total = plan.layout().total_tokens();
  const int Hq = dims.heads_q;
  std::vector<float> delta(static_cast<std::size_t>(Hq) * T_total);
  std::vector<float> dq_acc(static_cast<std::size_t>(T_total) * Hq * Dp);
  const T* out = static_cast<const T*>(t.out);
  const T* dout = static_cast<const T*>(t.dout);
  const int batch = plan.layout().num_sequences();
  const std::int64_t items = static_cast<std::int64_t>(batch) * dims.heads_kv;

#pragma omp parallel num_threads(threads)
  {
    // delta = rowsum(dO * O), and a zeroed dQ accumulator, each row by one thread.
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < T_total; ++row) {
      for (int h = 0; h < Hq; ++h) {
        const std::ptrdiff_t base = (row * Hq + h) * D;
        float sum = 0.0f;
        for (int c = 0; c < D; ++c) sum += to_f32(out[base + c]) * to_f32(dout[base + c]);
        delta[h * T_total + row] = sum;
      }
      std::fill_n(dq_acc.data() + row * Hq * Dp, Hq * Dp, 0.0f);
    }

    BackwardTiles tiles_of_thread(ts, tsp, Dp);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < items; ++item) {
      backward_item<T>(plan, dims, t, scale, delta.data(), dq_acc.data(),
                       static_cast<int>(item / dims.heads_kv),
                       static_cast<int>(item % dims.heads_kv), tiles_of_thread);
    }

    T* dq = static_cast<T*>(t.dq);
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < T_total; ++row) {
      for (int h = 0; h < Hq; ++h) {
        const float* acc = dq_acc.data() + (row * Hq + h) * Dp;
        T* dst = dq + (row * Hq + h) * D;
        for (int c = 0; c < D; ++c) from_f32(acc[c] * scale, dst + c);
      }
    }
  }
}

}  // namespace

void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
             float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    forward_typed<float>(plan, dims, t, scale, threads);
  } else {
    forward_typed<std::uint16_t>(plan, dims, t, scale, threads);
  }
}

void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
              float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    backward_typed<float>(plan, dims, t, scale, threads);
  } else {
    backward_typed<std::uint16_t>(plan, dims, t, scale, threads);
  }
}

}  // namespace anchorctx::attention::cpu::ANCHORCTX_ISA
