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

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
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

int round_up(int x, int multiple) {
  return (x + multiple - 1) / multiple * multiple;
}

// Float buffers carved out of one 64-byte aligned allocation per thread.
class Workspace {
 public:
  explicit Workspace(std::initializer_list<std::size_t> sizes) {
    std::size_t total = 0;
    for (std::size_t n : sizes)
      total += (n + 15) / 16 * 16;
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

// --- element access: tensors are float32 or bf16 bits --------------------------------------

inline float to_f32(float x) {
  return x;
}
inline float to_f32(std::uint16_t bits) {
  return core::bf16_bits_to_float(bits);
}
inline void from_f32(float x, float* dst) {
  *dst = x;
}
inline void from_f32(float x, std::uint16_t* dst) {
  *dst = core::float_to_bf16_bits(x);
}

// Rows [0, rows) of a [*, D] slice with row stride `stride` into a dense [rows, Dp] tile,
// times `mul`; columns [D, Dp) are zero.
template <typename T>
void load_rows(const T* src, std::ptrdiff_t stride, int rows, int D, int Dp, float mul,
               float* dst) {
  for (int r = 0; r < rows; ++r) {
    const T* s = src + r * stride;
    float* d = dst + r * Dp;
    for (int c = 0; c < D; ++c)
      d[c] = to_f32(s[c]) * mul;
    for (int c = D; c < Dp; ++c)
      d[c] = 0.0f;
  }
}

// --- staging: inputs as float32 tiles the products can read in place ------------------------

// A [T, H, D] tensor seen head by head as float32 rows: row t of head h starts at
// base + h * head_stride + t * row_stride, and holds `Dp` floats (D values, then zeros).
struct Rows {
  const float* base;
  std::ptrdiff_t head_stride, row_stride;
  const float* at(int h, std::int64_t t) const { return base + h * head_stride + t * row_stride; }
};

// The input converted once into [H][T][Dp]. Even a float32 input is copied: read in place,
// the rows of one head lie H * D floats apart -- 4 KiB for 8 heads of 128 -- so a tile's rows
// all fall into the same L1 cache set and evict each other (measured: the backward ran 1.7x
// slower). Call from inside a parallel region (the loop is shared among its threads).
template <typename T>
Rows stage_rows(const T* src, std::int64_t tokens, int H, int D, int Dp,
                std::unique_ptr<float[]>& storage) {
#pragma omp single
  storage = std::make_unique_for_overwrite<float[]>(static_cast<std::size_t>(H) * tokens * Dp);
#pragma omp for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < H; ++h) {
      const T* s = src + (t * H + h) * D;
      float* d = storage.get() + (h * tokens + t) * Dp;
      for (int c = 0; c < D; ++c)
        d[c] = to_f32(s[c]);
      for (int c = D; c < Dp; ++c)
        d[c] = 0.0f;
    }
  }
  return {storage.get(), tokens * Dp, Dp};
}

// The transpose of a [T, H, D] tensor, tile by tile, as float32 [H][tiles][Dp][tsp]: each
// key/value tile becomes a dense right-hand operand of S = Q K^T or dP = dO V^T, its columns
// past the tile's end zero. (One transposed [Dp][T] matrix per head would put the rows of a
// tile T floats apart, which for T a multiple of 1024 maps them all to one cache set.)
struct Columns {
  const float* base;
  std::ptrdiff_t head_stride, tile_stride, ld;
  const float* at(int h, int tile) const { return base + h * head_stride + tile * tile_stride; }
};

template <typename T>
Columns stage_columns(const T* src, const BlockPlan& plan, int H, int D, int Dp,
                      std::unique_ptr<float[]>& storage) {
  const int tiles = plan.num_tiles(), tsp = round_up(plan.tile_size(), W);
  const std::ptrdiff_t tile_stride = static_cast<std::ptrdiff_t>(Dp) * tsp;
#pragma omp single
  storage =
      std::make_unique_for_overwrite<float[]>(static_cast<std::size_t>(H) * tiles * tile_stride);
#pragma omp for schedule(static) collapse(2)
  for (int h = 0; h < H; ++h) {
    for (int j = 0; j < tiles; ++j) {
      const Tile& tile = plan.tile(j);
      float* dst = storage.get() + (static_cast<std::ptrdiff_t>(h) * tiles + j) * tile_stride;
      for (int d = 0; d < Dp; ++d) {
        for (int c = 0; c < tsp; ++c) {
          dst[d * tsp + c] =
              (d < D && c < tile.size()) ? to_f32(src[((tile.begin + c) * H + h) * D + d]) : 0.0f;
        }
      }
    }
  }
  return {storage.get(), tiles * tile_stride, tile_stride, tsp};
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
  for (int c = span.anchor_hi; c < span.lo; ++c)
    s[c] = kNegInf;
  for (int c = std::max(span.hi, span.anchor_hi); c < width; ++c)
    s[c] = kNegInf;
}

// The columns [lo, hi) of a key tile that some row of a query tile sees, lo rounded down to the
// vector width. Products run over this window only, so a partial tile pays for what it uses:
// the anchor tile, seen through one column by every later query tile, costs one vector of
// columns instead of a whole tile. Rows see [doc_start(r), r] (plus the anchors), and over
// the rows of a tile these intervals join into [doc_start(first row), last row].
struct ColumnWindow {
  int lo, hi;
};

ColumnWindow column_window(const AttentionLayout& layout, MaskKind mask, const Tile& q_tile,
                           const Tile& kv_tile) {
  const std::int32_t base = layout.seq_begin(q_tile.seq);
  const std::int32_t c0 = kv_tile.begin - base, n = kv_tile.size();
  const int hi = std::clamp<std::int32_t>(q_tile.end - base - c0, 0, n);
  if (mask == MaskKind::causal) return {0, hi};
  const std::int32_t doc_lo = layout.doc_start_of(q_tile.seq, q_tile.begin - base) - c0;
  const int anchor_hi = mask == MaskKind::anchor
                            ? std::clamp<std::int32_t>(layout.anchor_len(q_tile.seq) - c0, 0, hi)
                            : 0;
  int lo = std::clamp<std::int32_t>(doc_lo, 0, hi);
  int window_hi = hi;
  if (anchor_hi > 0) {
    if (lo >= hi) window_hi = anchor_hi;  // only anchors visible here
    lo = 0;
  }
  return {lo / W * W, window_hi};
}

// --- forward ----------------------------------------------------------------------------------

// Per-thread tiles of the forward pass: the query tile (pre-scaled) and the output
// accumulator of each query head of the group, their running max and sum, and the scores.
struct ForwardTiles {
  ForwardTiles(int group, int ts, int tsp, int Dp)
      : ws({std::size_t(group) * ts * Dp, std::size_t(group) * ts * Dp, std::size_t(group) * ts,
            std::size_t(group) * ts, std::size_t(ts) * tsp}),
        q(ws[0]),
        o(ws[1]),
        row_max(ws[2]),
        row_sum(ws[3]),
        s(ws[4]) {}
  Workspace ws;
  float *q, *o, *row_max, *row_sum, *s;
};

// The inputs of the forward pass, staged once per call (see stage_rows / stage_columns).
struct ForwardInputs {
  Columns kt;  // K^T [Hkv][tiles][Dp][tsp]
  Rows v;      // V [Hkv][T][Dp]
};

// One query tile against all its key tiles, for the query heads of one kv head.
template <typename T>
void forward_item(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                  const ForwardInputs& in, float scale, int q_tile, int kv_head, ForwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size();
  const int group = dims.heads_q / dims.heads_kv;
  const std::ptrdiff_t q_stride = static_cast<std::ptrdiff_t>(dims.heads_q) * D;
  const Tile& qt = plan.tile(q_tile);
  const int m = qt.size();
  const AttentionLayout& layout = plan.layout();
  const std::int32_t seq_base = layout.seq_begin(qt.seq);

  const T* q = static_cast<const T*>(t.q);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    load_rows(q + qt.begin * q_stride + h * D, q_stride, m, D, Dp, scale * kLog2e,
              w.q + g * ts * Dp);
    std::fill_n(w.o + g * ts * Dp, m * Dp, 0.0f);
    std::fill_n(w.row_max + g * ts, m, kNegInf);
    std::fill_n(w.row_sum + g * ts, m, 0.0f);
  }

  for (const TileRef& ref : plan.kv_tiles_of(q_tile)) {
    const Tile& kt = plan.tile(ref.tile);
    const bool partial = ref.kind == TileKind::partial;
    const ColumnWindow win =
        partial ? column_window(layout, plan.mask(), qt, kt) : ColumnWindow{0, kt.size()};
    const int n = win.hi - win.lo, nw = round_up(n, W);
    const bool needs_mask = partial || n != nw;
    const std::int32_t c0 = kt.begin - seq_base + win.lo;  // local column of window column 0

    for (int g = 0; g < group; ++g) {
      float* o = w.o + g * ts * Dp;
      float* row_max = w.row_max + g * ts;
      float* row_sum = w.row_sum + g * ts;
      // S = (scale * log2e * Q) K^T  [m, nw]
      Gemm::run(m, nw, Dp, w.q + g * ts * Dp, Dp, 1, in.kt.at(kv_head, ref.tile) + win.lo, in.kt.ld,
                w.s, nw, false);
      for (int r = 0; r < m; ++r) {
        float* s = w.s + r * nw;
        if (needs_mask) {
          mask_row(s, nw,
                   partial
                       ? visible_span(layout, plan.mask(), qt.seq, qt.begin + r - seq_base, c0, n)
                       : RowSpan{0, n, 0});
        }
        // Online softmax: the new running max rescales the old sum and output row.
        V vmax = S::set1(kNegInf);
        for (int c = 0; c < nw; c += W)
          vmax = S::max(vmax, S::load(s + c));
        const float old_max = row_max[r];
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
        row_sum[r] = row_sum[r] * alpha + S::reduce_sum(vsum);
        row_max[r] = new_max;
        if (alpha != 1.0f) {
          const V va = S::set1(alpha);
          for (int c = 0; c < Dp; c += W)
            S::store(o + r * Dp + c, S::load(o + r * Dp + c) * va);
        }
      }
      // O += P V  [m, Dp]
      Gemm::run(m, Dp, n, w.s, nw, 1, in.v.at(kv_head, kt.begin + win.lo), in.v.row_stride, o, Dp,
                true);
    }
  }

  T* out = static_cast<T*>(t.out);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    for (int r = 0; r < m; ++r) {
      const float sum = w.row_sum[g * ts + r];
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const float* o = w.o + (g * ts + r) * Dp;
      T* dst = out + (qt.begin + r) * q_stride + h * D;
      for (int c = 0; c < D; ++c)
        from_f32(o[c] * inv, dst + c);
      t.lse[static_cast<std::ptrdiff_t>(h) * layout.total_tokens() + qt.begin + r] =
          sum > 0.0f ? (w.row_max[g * ts + r] + std::log2(sum)) * kLn2 : kNegInf;
    }
  }
}

template <typename T>
void forward_typed(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                   float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const int group = dims.heads_q / dims.heads_kv;
  const std::int64_t tokens = plan.layout().total_tokens();
  const std::int64_t items = static_cast<std::int64_t>(plan.num_tiles()) * dims.heads_kv;
  std::unique_ptr<float[]> kt_storage, v_storage;
#pragma omp parallel num_threads(threads)
  {
    const ForwardInputs in{
        stage_columns(static_cast<const T*>(t.k), plan, dims.heads_kv, D, Dp, kt_storage),
        stage_rows(static_cast<const T*>(t.v), tokens, dims.heads_kv, D, Dp, v_storage)};
    ForwardTiles tiles(group, ts, tsp, Dp);
    // Later tiles of a causal sequence see the most keys: start with them for balance.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = items - 1; item >= 0; --item) {
      forward_item<T>(plan, dims, t, in, scale, static_cast<int>(item / dims.heads_kv),
                      static_cast<int>(item % dims.heads_kv), tiles);
    }
  }
}

// --- backward ---------------------------------------------------------------------------------

// Per-thread tiles of the backward pass.
struct BackwardTiles {
  BackwardTiles(int ts, int tsp, int Dp)
      : ws({std::size_t(ts) * Dp, std::size_t(ts) * Dp, std::size_t(ts) * tsp,
            std::size_t(ts) * tsp, std::size_t(ts), std::size_t(ts)}),
        dk(ws[0]),
        dv(ws[1]),
        p(ws[2]),
        ds(ws[3]),
        lse2(ws[4]),
        delta(ws[5]) {}
  Workspace ws;
  float *dk, *dv, *p, *ds, *lse2, *delta;
};

// The inputs of the backward pass, staged once per call.
struct BackwardInputs {
  Rows q, dout, k;     // [Hq][T][Dp], [Hq][T][Dp], [Hkv][T][Dp]
  Columns kt, vt;      // K^T, V^T [Hkv][tiles][Dp][tsp]
  const float* delta;  // rowsum(dO * O) [Hq, T]
  float* dq_acc;       // float32 dQ accumulator [T, Hq, Dp]
};

// One (query tile, key tile) pair for one query head h, over the key tile's column window:
// P = exp2(scale * log2e * Q K^T - lse * log2e) into w.p and dS = P * (dO V^T - delta) into
// w.ds, both [m, nw]. Both backward schedules call exactly this, so they agree to the bit.
struct PairWindow {
  const Tile& q_tile;
  const Tile& kv_tile;
  ColumnWindow win;
  int m, n, nw;
};

PairWindow pair_window(const BlockPlan& plan, int q_tile, int kv_tile, TileKind kind) {
  const Tile& qt = plan.tile(q_tile);
  const Tile& kt = plan.tile(kv_tile);
  const ColumnWindow win = kind == TileKind::partial
                               ? column_window(plan.layout(), plan.mask(), qt, kt)
                               : ColumnWindow{0, kt.size()};
  const int n = win.hi - win.lo;
  return {qt, kt, win, qt.size(), n, round_up(n, W)};
}

void pair_probabilities(const BlockPlan& plan, const BackwardTensors& t, const BackwardInputs& in,
                        float scale, const PairWindow& pw, int kv_tile, TileKind kind, int h,
                        int kv_head, BackwardTiles& w) {
  const AttentionLayout& layout = plan.layout();
  const std::int64_t tokens = layout.total_tokens();
  const Tile& qt = pw.q_tile;
  const int seq = qt.seq, m = pw.m, n = pw.n, nw = pw.nw, Dp = static_cast<int>(in.q.row_stride);
  const std::int32_t seq_base = layout.seq_begin(seq);
  const std::int32_t c0 = pw.kv_tile.begin - seq_base + pw.win.lo;
  const bool partial = kind == TileKind::partial;
  for (int r = 0; r < m; ++r) {
    const float lse = t.lse[h * tokens + qt.begin + r];
    // A row that sees nothing has lse = -inf; +inf here makes its P exactly 0.
    w.lse2[r] = lse == kNegInf ? std::numeric_limits<float>::infinity() : lse * kLog2e;
    w.delta[r] = in.delta[h * tokens + qt.begin + r];
  }
  const float* q_rows = in.q.at(h, qt.begin);
  Gemm::run(m, nw, Dp, q_rows, Dp, 1, in.kt.at(kv_head, kv_tile) + pw.win.lo, in.kt.ld, w.p, nw,
            false);
  const V vs = S::set1(scale * kLog2e);
  for (int r = 0; r < m; ++r) {
    float* p = w.p + r * nw;
    if (partial || n != nw) {
      mask_row(p, nw,
               partial ? visible_span(layout, plan.mask(), seq, qt.begin + r - seq_base, c0, n)
                       : RowSpan{0, n, 0});
    }
    const V vl = S::set1(w.lse2[r]);
    for (int c = 0; c < nw; c += W)
      S::store(p + c, S::exp2(S::load(p + c) * vs - vl));
  }
  Gemm::run(m, nw, Dp, in.dout.at(h, qt.begin), Dp, 1, in.vt.at(kv_head, kv_tile) + pw.win.lo,
            in.vt.ld, w.ds, nw, false);
  for (int r = 0; r < m; ++r) {
    const V vd = S::set1(w.delta[r]);
    float* ds = w.ds + r * nw;
    const float* p = w.p + r * nw;
    for (int c = 0; c < nw; c += W)
      S::store(ds + c, S::load(p + c) * (S::load(ds + c) - vd));
  }
}

// dQ += dS K for the pair in w.ds, into the float32 accumulator rows of head h.
void accumulate_dq(const BackwardInputs& in, const PairWindow& pw, int h, int kv_head,
                   std::ptrdiff_t acc_stride, const BackwardTiles& w) {
  const int Dp = static_cast<int>(in.k.row_stride);
  Gemm::run(pw.m, Dp, pw.n, w.ds, pw.nw, 1, in.k.at(kv_head, pw.kv_tile.begin + pw.win.lo), Dp,
            in.dq_acc + pw.q_tile.begin * acc_stride + h * Dp, acc_stride, true);
}

// Key tile j of one kv head: dK and dV of its rows over every query tile that sees it (query
// tiles, then heads, ascending), and -- in the fused schedule -- the dQ contributions too.
template <typename T>
void backward_kv_tile(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                      const BackwardInputs& in, float scale, int j, int kv_head, bool with_dq,
                      BackwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int group = dims.heads_q / dims.heads_kv;
  const std::ptrdiff_t kv_stride = static_cast<std::ptrdiff_t>(dims.heads_kv) * D;
  const std::ptrdiff_t acc_stride = static_cast<std::ptrdiff_t>(dims.heads_q) * Dp;
  const Tile& kt = plan.tile(j);
  std::fill_n(w.dk, kt.size() * Dp, 0.0f);
  std::fill_n(w.dv, kt.size() * Dp, 0.0f);

  for (const TileRef& ref : plan.q_tiles_of(j)) {
    const PairWindow pw = pair_window(plan, ref.tile, j, ref.kind);
    for (int g = 0; g < group; ++g) {
      const int h = kv_head * group + g;
      pair_probabilities(plan, t, in, scale, pw, j, ref.kind, h, kv_head, w);
      // dV += P^T dO  [n, Dp];  dK += dS^T Q  [n, Dp]
      Gemm::run(pw.n, Dp, pw.m, w.p, 1, pw.nw, in.dout.at(h, pw.q_tile.begin), Dp,
                w.dv + pw.win.lo * Dp, Dp, true);
      Gemm::run(pw.n, Dp, pw.m, w.ds, 1, pw.nw, in.q.at(h, pw.q_tile.begin), Dp,
                w.dk + pw.win.lo * Dp, Dp, true);
      if (with_dq) accumulate_dq(in, pw, h, kv_head, acc_stride, w);
    }
  }

  T* dk = static_cast<T*>(t.dk);
  T* dv = static_cast<T*>(t.dv);
  for (int r = 0; r < kt.size(); ++r) {
    T* dk_row = dk + (kt.begin + r) * kv_stride + kv_head * D;
    T* dv_row = dv + (kt.begin + r) * kv_stride + kv_head * D;
    for (int c = 0; c < D; ++c) {
      from_f32(w.dk[r * Dp + c] * scale, dk_row + c);
      from_f32(w.dv[r * Dp + c], dv_row + c);
    }
  }
}

// Query tile i of one kv head's group: its dQ over every key tile it sees, in ascending order --
// the order in which the fused schedule adds the same contributions.
void backward_q_tile(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                     const BackwardInputs& in, float scale, int i, int kv_head, BackwardTiles& w) {
  const int group = dims.heads_q / dims.heads_kv;
  const std::ptrdiff_t acc_stride =
      static_cast<std::ptrdiff_t>(dims.heads_q) * round_up(dims.head_dim, W);
  for (const TileRef& ref : plan.kv_tiles_of(i)) {
    const PairWindow pw = pair_window(plan, i, ref.tile, ref.kind);
    for (int g = 0; g < group; ++g) {
      const int h = kv_head * group + g;
      pair_probabilities(plan, t, in, scale, pw, ref.tile, ref.kind, h, kv_head, w);
      accumulate_dq(in, pw, h, kv_head, acc_stride, w);
    }
  }
}

template <typename T>
void backward_typed(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                    float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const std::int64_t tokens = plan.layout().total_tokens();
  const int Hq = dims.heads_q, Hkv = dims.heads_kv;
  const auto delta = std::make_unique_for_overwrite<float[]>(static_cast<std::size_t>(Hq) * tokens);
  const auto dq_acc =
      std::make_unique_for_overwrite<float[]>(static_cast<std::size_t>(tokens) * Hq * Dp);
  std::unique_ptr<float[]> q_storage, dout_storage, k_storage, kt_storage, vt_storage;
  const T* out = static_cast<const T*>(t.out);
  const T* dout = static_cast<const T*>(t.dout);
  const std::int64_t sequence_items =
      static_cast<std::int64_t>(plan.layout().num_sequences()) * Hkv;
  // Both schedules add every contribution in the same order, so the choice -- which depends
  // on the thread count -- never changes a bit of the result.
  const bool fused = sequence_items >= threads;

#pragma omp parallel num_threads(threads)
  {
    const BackwardInputs in{stage_rows(static_cast<const T*>(t.q), tokens, Hq, D, Dp, q_storage),
                            stage_rows(dout, tokens, Hq, D, Dp, dout_storage),
                            stage_rows(static_cast<const T*>(t.k), tokens, Hkv, D, Dp, k_storage),
                            stage_columns(static_cast<const T*>(t.k), plan, Hkv, D, Dp, kt_storage),
                            stage_columns(static_cast<const T*>(t.v), plan, Hkv, D, Dp, vt_storage),
                            delta.get(),
                            dq_acc.get()};
    // delta = rowsum(dO * O), and a zeroed dQ accumulator, each row by one thread.
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < tokens; ++row) {
      for (int h = 0; h < Hq; ++h) {
        const std::ptrdiff_t base = (row * Hq + h) * D;
        float sum = 0.0f;
        for (int c = 0; c < D; ++c)
          sum += to_f32(out[base + c]) * to_f32(dout[base + c]);
        delta[h * tokens + row] = sum;
      }
      std::fill_n(dq_acc.get() + row * Hq * Dp, Hq * Dp, 0.0f);
    }

    BackwardTiles tiles(ts, tsp, Dp);
    if (fused) {
      // One item per (sequence, kv head): it owns the dQ rows of its heads in its sequence.
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t item = 0; item < sequence_items; ++item) {
        const int seq = static_cast<int>(item / Hkv), kv_head = static_cast<int>(item % Hkv);
        for (int j = plan.first_tile(seq); j < plan.first_tile(seq + 1); ++j)
          backward_kv_tile<T>(plan, dims, t, in, scale, j, kv_head, true, tiles);
      }
    } else {
      // Too few sequences x kv heads for the threads: dK, dV per key tile, then dQ per query
      // tile, recomputing P and dS (7 products a pair instead of 5, on every thread). Early
      // key tiles and late query tiles see the most work (causal): they go first.
      const std::int64_t tile_items = static_cast<std::int64_t>(plan.num_tiles()) * Hkv;
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t item = 0; item < tile_items; ++item) {
        backward_kv_tile<T>(plan, dims, t, in, scale, static_cast<int>(item / Hkv),
                            static_cast<int>(item % Hkv), false, tiles);
      }
#pragma omp for schedule(dynamic, 1)
      for (std::int64_t item = tile_items - 1; item >= 0; --item) {
        backward_q_tile(plan, dims, t, in, scale, static_cast<int>(item / Hkv),
                        static_cast<int>(item % Hkv), tiles);
      }
    }

    T* dq = static_cast<T*>(t.dq);
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < tokens; ++row) {
      for (int h = 0; h < Hq; ++h) {
        const float* acc = dq_acc.get() + (row * Hq + h) * Dp;
        T* dst = dq + (row * Hq + h) * D;
        for (int c = 0; c < D; ++c)
          from_f32(acc[c] * scale, dst + c);
      }
    }
  }
}

}  // namespace

void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t, float scale,
             int threads) {
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
