// The CPU attention kernels, written once and compiled once per instruction set: a kernel TU
// defines ANCHORCTX_ISA (a namespace name), ANCHORCTX_VEC_WIDTH, ANCHORCTX_GEMM_ROWS and
// ANCHORCTX_GEMM_VECS, then includes this file. Everything below lands in
// anchorctx::attention::cpu::ANCHORCTX_ISA, so the copies never share a symbol.
//
// The algorithm is FlashAttention-2 on CPU tiles, driven by the BlockPlan:
// - forward (algorithm 1): one work item per (query tile, kv head); for each step of the key
//   tiles the plan lists (a partial tile, or a run of full ones: next_forward_step), S = Q K^T,
//   mask (partial tiles only), online softmax, O += P V; the row log-sum-exp is saved for the
//   backward.
// - backward (algorithm 2): for each key tile of one kv head and each query tile that sees it:
//   recompute P from the saved lse, then dV, dP, dS, dK, and dQ. Work items are whole
//   sequences or single key tiles (schedule_backward); dQ rows take their contributions in
//   ascending key-tile order whichever thread computes them (dq_turns.h): bit-identical for
//   any thread count.
// Scores are kept in base 2: Q is pre-scaled by scale * log2(e), so softmax uses exp2.
// Which keys a query row sees comes from visible_keys (mask.h), computed once per call for
// every query row (row_spans); non-finite input rows enter the products as zeros and are
// flagged for nan_rules.h.
#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
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
#include "attention/cpu/dq_turns.h"
#include "attention/cpu/nan_rules.h"

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

// Arrays on 64-byte boundaries, so that no vector or tile load of a staged operand splits a
// cache line: new[] of a large block returns glibc's mmap'd chunk 16 bytes past a page, which
// made every 64-byte load of the staged tiles touch two lines.
struct FreeAligned {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using AlignedArray = std::unique_ptr<T[], FreeAligned>;
// Uninitialised unless `zeroed` (the staging writes every element; per-thread tiles may not).
template <typename T>
AlignedArray<T> make_aligned_array(std::size_t n, bool zeroed = false) {
  const std::size_t bytes = (std::max<std::size_t>(n, 1) * sizeof(T) + 63) / 64 * 64;
  AlignedArray<T> array(static_cast<T*>(std::aligned_alloc(64, bytes)));
  if (array == nullptr) throw std::bad_alloc();
  if (zeroed) std::memset(array.get(), 0, bytes);
  return array;
}

// The large arrays of a kernel call (staged inputs, the dQ accumulator: O(T x H x D) each), kept
// by the calling thread for its next call. Fresh arrays cost a page fault and the kernel's zeroing
// per 4 KiB on every call: 90,000 faults per forward + backward at T = 16384, H = 8, D = 128, and
// clear_page alone 5% of that call's samples (perf). A thread keeps the largest arrays it used
// (a training step's peak memory is unchanged: it held them during the call anyway).
class CallScratch {
 public:
  // Each call numbers its own arrays from 0 (a forward's slot 0 is a backward's slot 0 too).
  static constexpr int kSlots = 10;
  // Slot `slot` as at least n T's, 64-byte aligned, contents undefined; valid until the slot
  // is reserved larger. The kernels reserve every slot before their parallel region, so a
  // failed allocation is an exception for the caller, not a throw inside OpenMP.
  template <typename T>
  T* reserve(int slot, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes > sizes_[slot]) {
      arrays_[slot].reset();  // first: the old and the new array never live at once
      arrays_[slot] = make_aligned_array<std::byte>(bytes);
      sizes_[slot] = bytes;
    }
    return reinterpret_cast<T*>(arrays_[slot].get());
  }

 private:
  AlignedArray<std::byte> arrays_[kSlots];
  std::size_t sizes_[kSlots] = {};
};

CallScratch& call_scratch() {
  thread_local CallScratch scratch;
  return scratch;
}

// Float buffers carved out of one 64-byte aligned allocation per thread.
class Workspace {
 public:
  explicit Workspace(std::initializer_list<std::size_t> sizes) {
    std::size_t total = 0;
    for (std::size_t n : sizes)
      total += (n + 15) / 16 * 16;
    data_ = make_aligned_array<float>(total, true);
    std::size_t offset = 0;
    for (std::size_t n : sizes) {
      parts_.push_back(data_.get() + offset);
      offset += (n + 15) / 16 * 16;
    }
  }
  float* operator[](std::size_t i) const { return parts_[i]; }

 private:
  AlignedArray<float> data_;
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

// A [tokens, heads, D] tensor of T with resolved strides (kernels.cpp fills the defaults).
template <typename T>
struct View {
  T* base;
  std::ptrdiff_t token, head;
  T* row(std::int64_t t, int h) const { return base + t * token + h * head; }
};
template <typename T>
View<const T> view(const void* p, const Strides& s) {
  return {static_cast<const T*>(p), s.token, s.head};
}
template <typename T>
View<T> view(void* p, const Strides& s) {
  return {static_cast<T*>(p), s.token, s.head};
}

// One row of D values as float32 times `mul` into d[0, Dp) (zeros past D). A row holding a
// non-finite value is stored as zeros and reported (true): its NaN must not meet a masked
// zero probability in a product (0 * NaN = NaN would leak past the mask); nan_rules.h writes
// the NaNs it should cause afterwards. The test is an OR of exponent bits, which vectorises.
template <typename T>
bool convert_row(const T* s, int D, int Dp, float mul, float* d) {
  std::uint32_t special = 0;
  for (int c = 0; c < D; ++c) {
    const float x = to_f32(s[c]);
    special |=
        static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(x) & 0x7F800000u) == 0x7F800000u);
    d[c] = x * mul;
  }
  for (int c = D; c < Dp; ++c)
    d[c] = 0.0f;
  if (special == 0) return false;
  std::fill_n(d, Dp, 0.0f);
  return true;
}

// Rows [t0, t0 + rows) of head h into a dense [rows, Dp] tile, times `mul`; flags the
// non-finite rows in bad[t] (bad is [tokens] of this head).
template <typename T>
void load_rows(View<const T> src, std::int64_t t0, int h, int rows, int D, int Dp, float mul,
               float* dst, std::uint8_t* bad) {
  for (int r = 0; r < rows; ++r)
    bad[t0 + r] = convert_row(src.row(t0 + r, h), D, Dp, mul, dst + r * Dp);
}

// --- staging: inputs as float32 tiles the products can read in place ------------------------

// The elements of H heads of rows [tokens][Dp].
inline std::size_t rows_size(int H, std::int64_t tokens, int Dp) {
  return static_cast<std::size_t>(H) * tokens * Dp;
}

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
// slower). Call from inside a parallel region (the loop is shared among its threads); `data`
// holds rows_size(H, tokens, Dp) floats.
// Non-finite rows are staged as zeros and flagged in bad [H][tokens] (convert_row).
template <typename T>
Rows stage_rows(View<const T> src, std::int64_t tokens, int H, int D, int Dp, float* data,
                std::uint8_t* bad) {
#pragma omp for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (int h = 0; h < H; ++h)
      bad[h * tokens + t] = convert_row(src.row(t, h), D, Dp, 1.0f, data + (h * tokens + t) * Dp);
  }
  return {data, tokens * Dp, Dp};
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

// The elements of H heads of tiles: `tiles` of them (the plan's key tiles, or query tiles), each
// [Dp x tsp].
inline std::size_t tiles_size(int H, int tiles, int Dp, int tsp) {
  return static_cast<std::size_t>(H) * tiles * Dp * tsp;
}

// Non-finite rows become zero columns (convert_row); they are flagged by stage_rows of the
// same tensor, or, where only the columns are staged, in bad [H][tokens] when not null. `data`
// holds tiles_size(H, key tiles, Dp, tsp) floats.
template <typename T>
Columns stage_columns(View<const T> src, const BlockPlan& plan, int H, int D, int Dp, float* data,
                      std::uint8_t* bad) {
  const int tiles = plan.num_kv_tiles(), tsp = round_up(plan.tile_size(), W);
  const std::int64_t tokens = plan.layout().total_tokens();
  const std::ptrdiff_t tile_stride = static_cast<std::ptrdiff_t>(Dp) * tsp;
#pragma omp for schedule(static) collapse(2)
  for (int h = 0; h < H; ++h) {
    for (int j = 0; j < tiles; ++j) {
      const Tile& tile = plan.kv_tile(j);
      float* dst = data + (static_cast<std::ptrdiff_t>(h) * tiles + j) * tile_stride;
      std::fill_n(dst, tile_stride, 0.0f);
      float row[256];
      for (int c = 0; c < tile.size(); ++c) {
        const bool special = convert_row(src.row(tile.begin + c, h), D, D, 1.0f, row);
        if (bad != nullptr) bad[h * tokens + tile.begin + c] = special;
        for (int d = 0; d < D; ++d)
          dst[d * tsp + c] = row[d];
      }
    }
  }
  return {data, tiles * tile_stride, tile_stride, tsp};
}

// --- masking ---------------------------------------------------------------------------------

// visible_keys (mask.h) of every query row of the batch into spans [Tq] (sized by the caller,
// before the region): computed once per call, read by every head and key tile. Call from
// inside a parallel region.
void row_spans(const BlockPlan& plan, std::vector<KeySpans>& spans) {
  const AttentionLayout& layout = plan.layout();
#pragma omp for schedule(static)
  for (int i = 0; i < plan.num_q_tiles(); ++i) {
    const Tile& qt = plan.q_tile(i);
    for (std::int32_t row = qt.begin; row < qt.end; ++row)
      spans[row] = layout.visible_keys(plan.mask(), qt.seq, row - layout.q_begin(qt.seq));
  }
}

// A row's visible keys within the columns [0, n) of a window starting at local key c0:
// [0, anchor_hi) and [lo, hi). Columns >= n are never visible.
struct RowSpan {
  int anchor_hi, lo, hi;
};

RowSpan window_span(const KeySpans& keys, std::int32_t c0, int n) {
  const int hi = std::clamp<std::int32_t>(keys.hi - c0, 0, n);
  return {std::clamp<std::int32_t>(keys.anchor_end - c0, 0, n),
          std::clamp<std::int32_t>(keys.lo - c0, 0, hi), hi};
}

// Sets the entries of the keys a row does not see to `value` (columns [0, width)): -inf for
// scores, 0 for probabilities.
void mask_row(float* s, int width, RowSpan span, float value = kNegInf) {
  for (int c = span.anchor_hi; c < span.lo; ++c)
    s[c] = value;
  for (int c = std::max(span.hi, span.anchor_hi); c < width; ++c)
    s[c] = value;
}

// The columns [lo, hi) of a key tile that some row of a query tile sees, lo rounded down to the
// vector width. Products run over this window only, so a partial tile pays for what it uses:
// the anchor tile, seen through one column by every later query tile, costs one vector of
// columns instead of a whole tile. The spans never shrink with the row and each row's [lo, hi)
// reaches the next one's (mask.h), so over the tile's rows they join into [0, last.anchor_end)
// and [first.lo, last.hi).
struct ColumnWindow {
  int lo, hi;
};

ColumnWindow column_window(const AttentionLayout& layout, const KeySpans& first,
                           const KeySpans& last, const Tile& kv_tile) {
  const std::int32_t c0 = kv_tile.begin - layout.seq_begin(kv_tile.seq), n = kv_tile.size();
  const int hi = std::clamp<std::int32_t>(last.hi - c0, 0, n);
  const int lo = std::clamp<std::int32_t>(first.lo - c0, 0, hi);
  const int anchor_hi = std::clamp<std::int32_t>(last.anchor_end - c0, 0, n);
  if (anchor_hi == 0) return {lo / W * W, hi};
  return {0, lo < hi ? hi : anchor_hi};  // anchors at the start of the window
}

// --- forward ----------------------------------------------------------------------------------

// The forward takes up to this many key columns per softmax step: a run of consecutive full
// key tiles of one sequence is one step, whose P V product sums over all of them at once (their
// V rows lie back to back in the staged layouts). Per step, every row of O is rescaled by its
// new max and loaded and stored as the P V product's accumulator: with the plan's 64-key tiles
// alone that was 2 float32 operations per score for D = 128, and P V's K was 64 keys. 256 keys
// keep the scores of a 64-row tile in L2.
constexpr int kForwardStepColumns = 256;

int forward_step_columns(int tsp) {
  return std::max(tsp, kForwardStepColumns / tsp * tsp);
}

// One softmax step of the forward: `count` key tiles from the plan's list, their columns side
// by side. Either one tile (a partial tile with its column window, or a short one) or a run of
// full tiles of `tsp` keys each.
struct ForwardStep {
  int first_ref, count;
  bool partial;
  ColumnWindow win;  // of the first tile; the whole tile for a run
  int n, nw;         // visible columns of the step, and rounded up to the vector width
};

// The steps of a query tile, in the plan's order (the summation order, the same for any
// thread count).
ForwardStep next_forward_step(const BlockPlan& plan, std::span<const TileRef> refs, int i,
                              const KeySpans& first, const KeySpans& last, int tsp) {
  const TileRef& ref = refs[i];
  const Tile& kt = plan.kv_tile(ref.tile);
  if (ref.kind == TileKind::partial || kt.size() != tsp) {
    const bool partial = ref.kind == TileKind::partial;
    const ColumnWindow win =
        partial ? column_window(plan.layout(), first, last, kt) : ColumnWindow{0, kt.size()};
    const int n = win.hi - win.lo;
    return {i, 1, partial, win, n, round_up(n, W)};
  }
  const int max_count = forward_step_columns(tsp) / tsp;
  int count = 1;
  while (count < max_count && i + count < static_cast<int>(refs.size())) {
    const TileRef& next = refs[i + count];
    if (next.kind != TileKind::full || next.tile != ref.tile + count ||
        plan.kv_tile(next.tile).size() != tsp)
      break;
    ++count;
  }
  return {i, count, false, ColumnWindow{0, tsp}, count * tsp, count * tsp};
}

// The largest (or smallest) of x[c] over c in [0, n), n a multiple of W. Four running
// extremes: with one, each vmaxps waited for the last (its latency per vector, in a pass with
// nothing else to do). max and min are exact, so the bits are those of one chain.
template <bool Largest>
float row_extreme(const float* x, int n) {
  const auto pick = [](V a, V b) { return Largest ? S::max(a, b) : S::min(a, b); };
  V m0 = S::set1(Largest ? kNegInf : std::numeric_limits<float>::infinity()), m1 = m0, m2 = m0,
    m3 = m0;
  int c = 0;
  for (; c + 4 * W <= n; c += 4 * W) {
    m0 = pick(m0, S::load(x + c));
    m1 = pick(m1, S::load(x + c + W));
    m2 = pick(m2, S::load(x + c + 2 * W));
    m3 = pick(m3, S::load(x + c + 3 * W));
  }
  for (; c < n; c += W)
    m0 = pick(m0, S::load(x + c));
  const V m = pick(pick(m0, m1), pick(m2, m3));
  return Largest ? S::reduce_max(m) : S::reduce_min(m);
}

// The largest of x[c] * scale over c in [0, n) (scale != 0), for the online softmax's row max,
// without a multiply per element: rounding is monotonic, so it is the largest x times a
// positive scale and the smallest times a negative one, the same bits.
float scaled_row_max(const float* x, int n, float scale) {
  return scale > 0.0f ? row_extreme<true>(x, n) * scale : row_extreme<false>(x, n) * scale;
}

// Per-thread tiles of the forward pass: the query tile (pre-scaled) and the output
// accumulator of each query head of the group, their running max and sum, and the scores.
struct ForwardTiles {
  ForwardTiles(int group, int ts, int tsp, int Dp)
      : ws({std::size_t(group) * ts * Dp, std::size_t(group) * ts * Dp, std::size_t(group) * ts,
            std::size_t(group) * ts, std::size_t(ts) * forward_step_columns(tsp)}),
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
  Columns kt;                          // K^T [Hkv][kv tiles][Dp][tsp]
  Rows v;                              // V [Hkv][Tk][Dp]
  const std::vector<KeySpans>& spans;  // [Tq]
  std::uint8_t* q_bad;                 // [Hq][Tq], written by the items
};

// One query tile against all its key tiles, for the query heads of one kv head.
template <typename T>
void forward_item(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                  const ForwardStrides& st, const ForwardInputs& in, float scale, int q_tile,
                  int kv_head, ForwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size();
  const int group = dims.heads_q / dims.heads_kv;
  const Tile& qt = plan.q_tile(q_tile);
  const int m = qt.size();
  const AttentionLayout& layout = plan.layout();
  const std::int64_t tq = layout.total_q_tokens();
  const KeySpans& first = in.spans[qt.begin];
  const KeySpans& last = in.spans[qt.end - 1];

  const View<const T> q = view<T>(t.q, st.q);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    load_rows(q, qt.begin, h, m, D, Dp, scale * kLog2e, w.q + g * ts * Dp, in.q_bad + h * tq);
    std::fill_n(w.o + g * ts * Dp, m * Dp, 0.0f);
    std::fill_n(w.row_max + g * ts, m, kNegInf);
    std::fill_n(w.row_sum + g * ts, m, 0.0f);
  }

  const int tsp = round_up(ts, W);
  const std::span<const TileRef> refs = plan.kv_tiles_of(q_tile);
  for (int i = 0; i < static_cast<int>(refs.size());) {
    const ForwardStep step = next_forward_step(plan, refs, i, first, last, tsp);
    i += step.count;
    const int j = refs[step.first_ref].tile;
    const Tile& kt = plan.kv_tile(j);
    const int n = step.n, nw = step.nw;
    const bool needs_mask = step.partial || n != nw;
    const std::int32_t c0 = kt.begin - layout.seq_begin(kt.seq) + step.win.lo;  // column 0

    for (int g = 0; g < group; ++g) {
      float* o = w.o + g * ts * Dp;
      float* row_max = w.row_max + g * ts;
      float* row_sum = w.row_sum + g * ts;
      // S = (scale * log2e * Q) K^T  [m, nw], one key tile's columns at a time.
      for (int b = 0; b < step.count; ++b) {
        Gemm::run(m, step.count == 1 ? nw : tsp, Dp, w.q + g * ts * Dp, Dp, 1,
                  in.kt.at(kv_head, j + b) + step.win.lo, in.kt.ld, w.s + b * tsp, nw, false);
      }
      for (int r = 0; r < m; ++r) {
        float* s = w.s + r * nw;
        if (needs_mask) {
          mask_row(s, nw,
                   step.partial ? window_span(in.spans[qt.begin + r], c0, n) : RowSpan{0, 0, n});
        }
        // Online softmax: the new running max rescales the old sum and output row.
        const float old_max = row_max[r];
        const float new_max = std::max(old_max, scaled_row_max(s, nw, 1.0f));
        if (new_max == kNegInf) {  // nothing visible in this row so far: P = 0
          std::fill_n(s, nw, 0.0f);
          continue;
        }
        const V vm = S::set1(new_max);
        V vsum{};
        for (int c = 0; c < nw; c += W) {
          const V p = S::exp2_nonpositive(S::load(s + c) - vm);
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
      Gemm::run(m, Dp, n, w.s, nw, 1, in.v.at(kv_head, kt.begin + step.win.lo), in.v.row_stride, o,
                Dp, true);
    }
  }

  const View<T> out = view<T>(t.out, st.out);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    for (int r = 0; r < m; ++r) {
      const float sum = w.row_sum[g * ts + r];
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const float* o = w.o + (g * ts + r) * Dp;
      T* dst = out.row(qt.begin + r, h);
      for (int c = 0; c < D; ++c)
        from_f32(o[c] * inv, dst + c);
      t.lse[h * tq + qt.begin + r] =
          sum > 0.0f ? (w.row_max[g * ts + r] + std::log2(sum)) * kLn2 : kNegInf;
    }
  }
}

template <typename T>
void forward_typed(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                   const ForwardStrides& st, float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const int group = dims.heads_q / dims.heads_kv;
  const std::int64_t tq = plan.layout().total_q_tokens(), tk = plan.layout().total_tokens();
  const std::int64_t items = static_cast<std::int64_t>(plan.num_q_tiles()) * dims.heads_kv;
  CallScratch& scratch = call_scratch();
  float* const kt_data =
      scratch.reserve<float>(0, tiles_size(dims.heads_kv, plan.num_kv_tiles(), Dp, tsp));
  float* const v_data = scratch.reserve<float>(1, rows_size(dims.heads_kv, tk, Dp));
  std::vector<KeySpans> spans(static_cast<std::size_t>(tq));
  std::vector<std::uint8_t> q_bad(dims.heads_q * tq), k_bad(dims.heads_kv * tk),
      v_bad(dims.heads_kv * tk);
#pragma omp parallel num_threads(threads)
  {
    row_spans(plan, spans);
    const ForwardInputs in{
        stage_columns(view<T>(t.k, st.k), plan, dims.heads_kv, D, Dp, kt_data, k_bad.data()),
        stage_rows(view<T>(t.v, st.v), tk, dims.heads_kv, D, Dp, v_data, v_bad.data()), spans,
        q_bad.data()};
    ForwardTiles tiles(group, ts, tsp, Dp);
    // Later tiles of a causal sequence see the most keys: start with them for balance.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = items - 1; item >= 0; --item) {
      forward_item<T>(plan, dims, t, st, in, scale, static_cast<int>(item / dims.heads_kv),
                      static_cast<int>(item % dims.heads_kv), tiles);
    }
  }
  poison_forward(plan, dims, t, st, q_bad.data(), k_bad.data(), v_bad.data());
}

// --- backward ---------------------------------------------------------------------------------

// The float32 dQ accumulator, head-major [Hq][Tq][Dp]: the rows one product adds to lie Dp
// floats apart. Token-major ([Tq][Hq][Dp]) put them Hq * Dp floats apart -- 4 KiB for 8 heads of
// 128 -- so a query tile's rows all fell into one L1 cache set (stage_rows' problem).
struct DqAccumulator {
  float* base;
  std::int64_t tq;
  int Dp;
  float* rows(int h, std::int64_t t) const { return base + (h * tq + t) * Dp; }
};

// delta = rowsum(dO * O) [Hq, Tq], and a zeroed float32 dQ accumulator, each row
// by one thread (call inside a parallel region). A row whose out or dout is not finite gets
// delta 0 (no NaN in the products) and its flag in out_bad; dout_bad is read, set by staging.
template <typename T>
void delta_rows(View<const T> out, View<const T> dout, std::int64_t tq, int Hq, int D, int Dp,
                float* delta, const DqAccumulator& dq_acc, std::uint8_t* out_bad,
                const std::uint8_t* dout_bad) {
#pragma omp for schedule(static)
  for (std::int64_t row = 0; row < tq; ++row) {
    for (int h = 0; h < Hq; ++h) {
      const T* o = out.row(row, h);
      const T* d = dout.row(row, h);
      float sum = 0.0f;
      std::uint32_t special = 0;
      for (int c = 0; c < D; ++c) {
        const float x = to_f32(o[c]);
        special |= static_cast<std::uint32_t>((std::bit_cast<std::uint32_t>(x) & 0x7F800000u) ==
                                              0x7F800000u);
        sum += x * to_f32(d[c]);
      }
      out_bad[h * tq + row] = special != 0;
      delta[h * tq + row] = special != 0 || dout_bad[h * tq + row] ? 0.0f : sum;
      std::fill_n(dq_acc.rows(h, row), Dp, 0.0f);
    }
  }
}

// dq = scale * the float32 accumulator, in the tensor's type (inside a parallel region).
template <typename T>
void write_dq(View<T> dq, const DqAccumulator& dq_acc, int Hq, int D, float scale) {
  const std::int64_t tq = dq_acc.tq;
#pragma omp for schedule(static)
  for (std::int64_t row = 0; row < tq; ++row) {
    for (int h = 0; h < Hq; ++h) {
      const float* acc = dq_acc.rows(h, row);
      T* dst = dq.row(row, h);
      for (int c = 0; c < D; ++c)
        from_f32(acc[c] * scale, dst + c);
    }
  }
}

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
  Rows q, dout, k;     // [Hq][Tq][Dp], [Hq][Tq][Dp], [Hkv][Tk][Dp]
  Columns kt, vt;      // K^T, V^T [Hkv][kv tiles][Dp][tsp]
  const float* delta;  // rowsum(dO * O) [Hq, Tq]
  DqAccumulator dq_acc;
  const std::vector<KeySpans>& spans;  // [Tq]
};

// One (query tile, key tile) pair for one query head h, over the key tile's column window:
// P = exp2(scale * log2e * Q K^T - lse * log2e) into w.p and dS = P * (dO V^T - delta) into
// w.ds, both [m, nw].
struct PairWindow {
  const Tile& q_tile;
  const Tile& kv_tile;
  ColumnWindow win;
  int m, n, nw;
};

PairWindow pair_window(const BlockPlan& plan, const BackwardInputs& in, int q_tile, int kv_tile,
                       TileKind kind) {
  const Tile& qt = plan.q_tile(q_tile);
  const Tile& kt = plan.kv_tile(kv_tile);
  const ColumnWindow win =
      kind == TileKind::partial
          ? column_window(plan.layout(), in.spans[qt.begin], in.spans[qt.end - 1], kt)
          : ColumnWindow{0, kt.size()};
  const int n = win.hi - win.lo;
  return {qt, kt, win, qt.size(), n, round_up(n, W)};
}

// The saved statistics of a pair's m query rows, from row `row0` of head-major [Hq, Tq] arrays:
// lse in base 2 and delta. A row that sees nothing has lse = -inf, and a NaN or +inf lse marks
// a bad row (its gradients become NaN in poison_backward): +inf here makes their P exactly 0.
void pair_row_stats(const float* lse, const float* delta, std::int64_t row0, int m, float* lse2,
                    float* row_delta) {
  for (int r = 0; r < m; ++r) {
    const float x = lse[row0 + r];
    lse2[r] = std::isfinite(x) ? x * kLog2e : std::numeric_limits<float>::infinity();
    row_delta[r] = delta[row0 + r];
  }
}

// P = exp2(scale * log2e * S - lse2) in place over [m, nw] scores, then 0 outside each row's
// visible columns: the row's spans (rows[r], partial tiles, window starting at column c0) or
// the first n columns.
void scores_to_probabilities(float* p, int m, int n, int nw, const float* lse2, float scale,
                             bool partial, const KeySpans* rows, std::int32_t c0) {
  const V vs = S::set1(scale * kLog2e);
  for (int r = 0; r < m; ++r) {
    float* row = p + r * nw;
    const V vl = S::set1(lse2[r]);
    for (int c = 0; c < nw; c += W)
      S::store(row + c, S::exp2(S::load(row + c) * vs - vl));
    // Masked after exp2, to 0: a -inf score times a negative scale would be +inf.
    if (partial || n != nw)
      mask_row(row, nw, partial ? window_span(rows[r], c0, n) : RowSpan{0, 0, n}, 0.0f);
  }
}

// dS = P * (dP - delta) in place over [m, nw] (ds holds dP = dO V^T).
void dp_to_ds(const float* p, float* ds, int m, int nw, const float* row_delta) {
  for (int r = 0; r < m; ++r) {
    const V vd = S::set1(row_delta[r]);
    const float* p_row = p + r * nw;
    float* ds_row = ds + r * nw;
    for (int c = 0; c < nw; c += W)
      S::store(ds_row + c, S::load(p_row + c) * (S::load(ds_row + c) - vd));
  }
}

void pair_probabilities(const BlockPlan& plan, const BackwardTensors& t, const BackwardInputs& in,
                        float scale, const PairWindow& pw, int kv_tile, TileKind kind, int h,
                        int kv_head, BackwardTiles& w) {
  const AttentionLayout& layout = plan.layout();
  const Tile& qt = pw.q_tile;
  const int m = pw.m, nw = pw.nw, Dp = static_cast<int>(in.q.row_stride);
  pair_row_stats(t.lse, in.delta, h * layout.total_q_tokens() + qt.begin, m, w.lse2, w.delta);
  Gemm::run(m, nw, Dp, in.q.at(h, qt.begin), Dp, 1, in.kt.at(kv_head, kv_tile) + pw.win.lo,
            in.kt.ld, w.p, nw, false);
  scores_to_probabilities(w.p, m, pw.n, nw, w.lse2, scale, kind == TileKind::partial,
                          in.spans.data() + qt.begin,
                          pw.kv_tile.begin - layout.seq_begin(pw.kv_tile.seq) + pw.win.lo);
  Gemm::run(m, nw, Dp, in.dout.at(h, qt.begin), Dp, 1, in.vt.at(kv_head, kv_tile) + pw.win.lo,
            in.vt.ld, w.ds, nw, false);
  dp_to_ds(w.p, w.ds, m, nw, w.delta);
}

// dQ += dS K for the pair in w.ds, into the float32 accumulator rows of head h.
void accumulate_dq(const BackwardInputs& in, const PairWindow& pw, int h, int kv_head,
                   const BackwardTiles& w) {
  const int Dp = static_cast<int>(in.k.row_stride);
  Gemm::run(pw.m, Dp, pw.n, w.ds, pw.nw, 1, in.k.at(kv_head, pw.kv_tile.begin + pw.win.lo), Dp,
            in.dq_acc.rows(h, pw.q_tile.begin), Dp, true);
}

// Key tile j of one kv head: dK and dV of its rows over every query tile that sees it (query
// tiles, then heads, ascending), and its dQ contributions, each in its turn.
template <typename T>
void backward_kv_tile(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                      const BackwardStrides& st, const BackwardInputs& in, float scale, int j,
                      int kv_head, DqTurns& turns, BackwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int group = dims.heads_q / dims.heads_kv;
  const Tile& kt = plan.kv_tile(j);
  std::fill_n(w.dk, kt.size() * Dp, 0.0f);
  std::fill_n(w.dv, kt.size() * Dp, 0.0f);

  for (const TileRef& ref : plan.q_tiles_of(j)) {
    const PairWindow pw = pair_window(plan, in, ref.tile, j, ref.kind);
    for (int g = 0; g < group; ++g) {
      const int h = kv_head * group + g;
      pair_probabilities(plan, t, in, scale, pw, j, ref.kind, h, kv_head, w);
      // dV += P^T dO  [n, Dp];  dK += dS^T Q  [n, Dp]
      Gemm::run(pw.n, Dp, pw.m, w.p, 1, pw.nw, in.dout.at(h, pw.q_tile.begin), Dp,
                w.dv + pw.win.lo * Dp, Dp, true);
      Gemm::run(pw.n, Dp, pw.m, w.ds, 1, pw.nw, in.q.at(h, pw.q_tile.begin), Dp,
                w.dk + pw.win.lo * Dp, Dp, true);
      turns.in_turn(ref.tile, h, j, [&] { accumulate_dq(in, pw, h, kv_head, w); });
    }
  }

  const View<T> dk = view<T>(t.dk, st.dk), dv = view<T>(t.dv, st.dv);
  for (int r = 0; r < kt.size(); ++r) {
    T* dk_row = dk.row(kt.begin + r, kv_head);
    T* dv_row = dv.row(kt.begin + r, kv_head);
    for (int c = 0; c < D; ++c) {
      from_f32(w.dk[r * Dp + c] * scale, dk_row + c);
      from_f32(w.dv[r * Dp + c], dv_row + c);
    }
  }
}

// The two schedules of the backward's key-tile work, kv_tile(j, kv_head), as
// backward_schedule (kernels.h) picks them from the thread count; both add every contribution in
// the same order (dq_turns.h), so the choice never changes a bit. Call inside the parallel region.
// - fused: one item per (sequence, kv head), its key tiles ascending. No thread ever waits and
//   each keeps its own dQ rows.
// - key tiles in turn: one item per (kv head, key tile), head by head, ascending: the threads
//   on a head share its inputs in cache and wait their turns to add to dQ. It keeps every
//   thread busy however few (sequence, kv head) items there are.
template <typename KvTile>
void schedule_backward(const BlockPlan& plan, int heads_kv, BackwardSchedule schedule,
                       DqTurns& turns, KvTile&& kv_tile) {
  if (schedule == BackwardSchedule::fused) {
    const std::int64_t items = static_cast<std::int64_t>(plan.layout().num_sequences()) * heads_kv;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < items; ++item) {
      const int seq = static_cast<int>(item / heads_kv);
      for (int j = plan.first_kv_tile(seq); j < plan.first_kv_tile(seq + 1); ++j)
        kv_tile(j, static_cast<int>(item % heads_kv));
    }
  } else {
    const int kv_tiles = plan.num_kv_tiles();
    const std::int64_t items = static_cast<std::int64_t>(kv_tiles) * heads_kv;
    for (std::int64_t item = turns.next_item(); item < items; item = turns.next_item())
      kv_tile(static_cast<int>(item % kv_tiles), static_cast<int>(item / kv_tiles));
#pragma omp barrier
  }
}

template <typename T>
void backward_typed(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                    const BackwardStrides& st, float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const std::int64_t tq = plan.layout().total_q_tokens(), tk = plan.layout().total_tokens();
  const int Hq = dims.heads_q, Hkv = dims.heads_kv;
  CallScratch& scratch = call_scratch();
  float* const delta = scratch.reserve<float>(0, static_cast<std::size_t>(Hq) * tq);
  float* const dq_acc = scratch.reserve<float>(1, rows_size(Hq, tq, Dp));
  float* const q_data = scratch.reserve<float>(2, rows_size(Hq, tq, Dp));
  float* const dout_data = scratch.reserve<float>(3, rows_size(Hq, tq, Dp));
  float* const k_data = scratch.reserve<float>(4, rows_size(Hkv, tk, Dp));
  float* const kt_data = scratch.reserve<float>(5, tiles_size(Hkv, plan.num_kv_tiles(), Dp, tsp));
  float* const vt_data = scratch.reserve<float>(6, tiles_size(Hkv, plan.num_kv_tiles(), Dp, tsp));
  std::vector<KeySpans> spans(static_cast<std::size_t>(tq));
  std::vector<std::uint8_t> q_bad(Hq * tq), dout_bad(Hq * tq), out_bad(Hq * tq), k_bad(Hkv * tk),
      v_bad(Hkv * tk);
  const View<const T> out = view<T>(t.out, st.out), dout = view<T>(t.dout, st.dout);
  const BackwardSchedule schedule = backward_schedule(plan, dims, threads);
  DqTurns turns(plan, Hq);

#pragma omp parallel num_threads(threads)
  {
    row_spans(plan, spans);
    const View<const T> k = view<T>(t.k, st.k);
    const BackwardInputs in{
        stage_rows(view<T>(t.q, st.q), tq, Hq, D, Dp, q_data, q_bad.data()),
        stage_rows(dout, tq, Hq, D, Dp, dout_data, dout_bad.data()),
        stage_rows(k, tk, Hkv, D, Dp, k_data, k_bad.data()),
        stage_columns(k, plan, Hkv, D, Dp, kt_data, nullptr),
        stage_columns(view<T>(t.v, st.v), plan, Hkv, D, Dp, vt_data, v_bad.data()),
        delta,
        {dq_acc, tq, Dp},
        spans};
    delta_rows(out, dout, tq, Hq, D, Dp, delta, in.dq_acc, out_bad.data(), dout_bad.data());

    BackwardTiles tiles(ts, tsp, Dp);
    schedule_backward(plan, Hkv, schedule, turns, [&](int j, int kv_head) {
      backward_kv_tile<T>(plan, dims, t, st, in, scale, j, kv_head, turns, tiles);
    });
    write_dq(view<T>(t.dq, st.dq), in.dq_acc, Hq, D, scale);
  }
  poison_backward(plan, dims, t, st, q_bad.data(), dout_bad.data(), out_bad.data(), k_bad.data(),
                  v_bad.data());
}

#if defined(ANCHORCTX_NATIVE_BF16)
#include "attention/cpu/kernels_native_bf16.h"
#endif

}  // namespace

void forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
             const ForwardStrides& st, float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    forward_typed<float>(plan, dims, t, st, scale, threads);
  } else {
#if defined(ANCHORCTX_NATIVE_BF16)
    native_forward(plan, dims, t, st, scale, threads);
#else
    forward_typed<std::uint16_t>(plan, dims, t, st, scale, threads);
#endif
  }
}

void backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
              const BackwardStrides& st, float scale, int threads) {
  if (t.dtype == core::DType::f32) {
    backward_typed<float>(plan, dims, t, st, scale, threads);
  } else {
#if defined(ANCHORCTX_NATIVE_BF16)
    native_backward(plan, dims, t, st, scale, threads);
#else
    backward_typed<std::uint16_t>(plan, dims, t, st, scale, threads);
#endif
  }
}

}  // namespace anchorctx::attention::cpu::ANCHORCTX_ISA
