// Native bf16 attention: the algorithm of kernels_impl.h (same plan walk, work items, column
// windows, online softmax, NaN flags, summation order) with every product on bf16 operands and
// float32 accumulation through `vdpbf16ps` (bf16_tile_gemm.h), as FlashAttention-2 runs on
// GPUs: scores, probabilities and their gradients are float32; P and dS are rounded to bf16
// just before the products that take them (O += P V; dV += P^T dO, dK += dS^T Q, dQ += dS K).
//
// vdpbf16ps wants both operands in pairs along the summed dimension, so the inputs are staged
// once per call in the layout each product reads in place (bf16_staging.h; bf16 inputs are
// copied, not converted; a non-finite row is staged as zeros and flagged, as in kernels_staging.h):
//   rows   [H][T][Dp] bf16      left operand of S = Q K^T and dP = dO V^T (pairs along D)
//   tcols  [H][tiles][Dp][tsp]  K^T, V^T as right operands: word (d/2, c) of a tile holds
//                               elements d, d+1 of its row c ("transposed columns")
//   prows  [H][tiles][tsp][Dp]  V, K as right operands of P V and dS K: word (r/2, d) holds
//                               rows r, r+1 at column d ("paired rows")
//   trows  [H][tiles][Dp][tsp]  Q^T, dO^T per query tile, left operands of the backward's
//                               dK^T += Q^T dS and dV^T += dO^T P
// The backward accumulates dK and dV transposed ([Dp][tsp] per key tile) so that its right
// operands are P and dS packed in pairs of rows, which is two instructions per 16 words
// (pack_pairs); the plain layout would need P^T and dS^T transposed element by element.
//
// Included by kernels_impl.h inside its anonymous namespace, only in the TUs compiled with
// -mavx512bf16 (kernels_avx512_bf16.cpp, W = 16; kernels_amx_bf16.cpp, the same with the
// products on AMX tiles where they fill them, amx_tile_gemm.h).
#pragma once

#include "attention/cpu/bf16_staging.h"
#include "attention/cpu/bf16_tile_gemm.h"

static_assert(W == 16, "the native bf16 kernels are written for 16-float vectors");

#if defined(ANCHORCTX_AMX)
#include "attention/cpu/amx_tile_gemm.h"
using Bf16Gemm = AmxBf16Gemm;  // kernels_amx_bf16.cpp: tiles on AMX, the rest as below
#else
using Bf16Gemm = Bf16TileGemm<6, 4>;
#endif

// The 32-bit words of a tile staged as bf16 pairs.
const std::uint32_t* words(const std::uint16_t* tile) {
  return reinterpret_cast<const std::uint32_t*>(tile);
}

// P or dS [m, nw] float32 packed as bf16 pairs of rows [ceil(m/2)][nw] 32-bit words: word
// (r/2, c) holds row r (low half) and r+1 (high half) at column c, rounded to nearest even; a
// missing last row is zero. The right operand of dV^T += dO^T P and dK^T += Q^T dS.
void pack_pairs(const float* x, int m, int nw, std::uint32_t* pairs) {
  // vcvtne2ps2bf16 gives [second row | first row] as two blocks of 16; this interleaves them.
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int r = 0; r < m; r += 2) {
    const float* r0 = x + r * nw;
    const float* r1 = x + (r + 1) * nw;
    for (int c = 0; c < nw; c += W) {
      const __m512 second = r + 1 < m ? _mm512_loadu_ps(r1 + c) : _mm512_setzero_ps();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(second, _mm512_loadu_ps(r0 + c));
      _mm512_storeu_si512(pairs + (r / 2) * nw + c, _mm512_permutexvar_epi16(interleave, both));
    }
  }
}

// x [m, nw] float32 rounded to bf16 rows [m][nw]: the left operand of O += P V and dQ += dS K.
void round_rows(const float* x, int m, int nw, std::uint16_t* rows) {
  for (int i = 0; i < m * nw; i += W) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(rows + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  }
}

// --- forward ----------------------------------------------------------------------------------

struct NativeForwardTiles {
  NativeForwardTiles(int group, int ts, int tsp, int Dp)
      : ws({std::size_t(group) * ts * Dp, std::size_t(group) * ts, std::size_t(group) * ts,
            std::size_t(ts) * forward_step_columns(tsp)}),
        o(ws[0]),
        row_max(ws[1]),
        row_sum(ws[2]),
        s(ws[3]),
        q(make_aligned_array<std::uint16_t>(std::size_t(group) * ts * Dp, true)),
        p(make_aligned_array<std::uint16_t>(std::size_t(ts) * forward_step_columns(tsp), true)) {}
  Workspace ws;
  float *o, *row_max, *row_sum, *s;
  AlignedArray<std::uint16_t> q, p;  // Q tile rows [group][ts][Dp]; P as bf16 [ts][nw]
};

struct NativeForwardInputs {
  const std::uint16_t* kt;  // K^T, transposed columns [Hkv][kv tiles][Dp][tsp]
  const std::uint16_t* v;   // V, paired rows [Hkv][kv tiles][tsp][Dp]
  std::ptrdiff_t tile_elems;
  const std::vector<KeySpans>& spans;  // [Tq]
  std::uint8_t* q_bad;                 // [Hq][Tq], written by the items
};

// forward_item of kernels_forward.h on bf16 products, a step of several key tiles at a time. Q is
// not pre-scaled (that would round it a second time): the scores are scaled by
// scale * log2(e) after the product, inside the softmax's passes.
void native_forward_item(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                         const ForwardStrides& st, const NativeForwardInputs& in, float scale,
                         int q_tile, int kv_head, NativeForwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const int tiles = plan.num_kv_tiles();
  const int group = dims.heads_q / dims.heads_kv;
  const Tile& qt = plan.q_tile(q_tile);
  const int m = qt.size();
  const AttentionLayout& layout = plan.layout();
  const std::int64_t tq = layout.total_q_tokens();
  const KeySpans& first = in.spans[qt.begin];
  const KeySpans& last = in.spans[qt.end - 1];
  const float c = scale * kLog2e;

  const View<const std::uint16_t> q = view<std::uint16_t>(t.q, st.q);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    for (int r = 0; r < m; ++r) {
      in.q_bad[h * tq + qt.begin + r] =
          copy_row_bf16(q.row(qt.begin + r, h), D, Dp, w.q.get() + (g * ts + r) * Dp);
    }
    std::fill_n(w.o + g * ts * Dp, m * Dp, 0.0f);
    std::fill_n(w.row_max + g * ts, m, kNegInf);
    std::fill_n(w.row_sum + g * ts, m, 0.0f);
  }

  const std::span<const TileRef> refs = plan.kv_tiles_of(q_tile);
  for (int i = 0; i < static_cast<int>(refs.size());) {
    const ForwardStep step = next_forward_step(plan, refs, i, first, last, tsp);
    i += step.count;
    const Tile& kt = plan.kv_tile(refs[step.first_ref].tile);
    const int n = step.n, nw = step.nw;
    const bool needs_mask = step.partial || n != nw;
    const std::int32_t c0 = kt.begin - layout.seq_begin(kt.seq) + step.win.lo;  // column 0
    const std::ptrdiff_t tile_at =
        (static_cast<std::ptrdiff_t>(kv_head) * tiles + refs[step.first_ref].tile);
    const std::uint16_t* k_tile = in.kt + tile_at * in.tile_elems;
    const std::uint32_t* v_words = words(in.v + tile_at * in.tile_elems) + step.win.lo / 2 * Dp;

    for (int g = 0; g < group; ++g) {
      float* o = w.o + g * ts * Dp;
      float* row_max = w.row_max + g * ts;
      float* row_sum = w.row_sum + g * ts;
      // S = Q K^T  [m, nw] (unscaled), one key tile's columns at a time.
      for (int b = 0; b < step.count; ++b) {
        const int cols = step.count == 1 ? nw : tsp;
        Bf16Gemm::run(m, cols, Dp / 2, w.q.get() + g * ts * Dp, Dp,
                      words(k_tile + b * in.tile_elems) + step.win.lo, tsp, w.s + b * tsp, nw,
                      false);
      }
      const V vc = S::set1(c);
      for (int r = 0; r < m; ++r) {
        float* s = w.s + r * nw;
        std::uint16_t* p = w.p.get() + r * nw;
        // Scaled before masking, so a masked score is -inf whatever the sign of the scale;
        // unmasked steps scale inside the two passes below instead of in a pass of their own.
        float row_scale = c;
        if (needs_mask) {
          for (int col = 0; col < nw; col += W)
            S::store(s + col, S::load(s + col) * vc);
          mask_row(s, nw,
                   step.partial ? window_span(in.spans[qt.begin + r], c0, n) : RowSpan{0, 0, n});
          row_scale = 1.0f;
        }
        const V vs = S::set1(row_scale);
        const float old_max = row_max[r];
        const float new_max = std::max(old_max, scaled_row_max(s, nw, row_scale));
        if (new_max == kNegInf) {  // nothing visible in this row so far: P = 0
          std::fill_n(p, nw, std::uint16_t{0});
          continue;
        }
        const V vm = S::set1(new_max);
        V vsum{};
        // P rounded to bf16 for the product; the row sum stays float32 (FlashAttention-2). Two
        // vectors per conversion and store (vcvtne2ps2bf16): one per vector was a fifth of the
        // forward's own time at D = 64 (perf annotate). The sum's order is unchanged.
        int col = 0;
        for (; col + 2 * W <= nw; col += 2 * W) {
          const V e0 = S::exp2_nonpositive(S::load(s + col) * vs - vm);
          const V e1 = S::exp2_nonpositive(S::load(s + col + W) * vs - vm);
          vsum += e0;
          vsum += e1;
          _mm512_storeu_si512(p + col, (__m512i)_mm512_cvtne2ps_pbh((__m512)e1, (__m512)e0));
        }
        if (col < nw) {
          const V e = S::exp2_nonpositive(S::load(s + col) * vs - vm);
          vsum += e;
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + col),
                              (__m256i)_mm512_cvtneps_pbh((__m512)e));
        }
        const float alpha = std::exp2(old_max - new_max);  // 0 when old_max is -inf
        row_sum[r] = row_sum[r] * alpha + S::reduce_sum(vsum);
        row_max[r] = new_max;
        if (alpha != 1.0f) {
          const V va = S::set1(alpha);
          for (int col = 0; col < Dp; col += W)
            S::store(o + r * Dp + col, S::load(o + r * Dp + col) * va);
        }
      }
      // O += P V  [m, Dp]; P's columns past n are 0, so the pairs may run to n rounded up.
      Bf16Gemm::run(m, Dp, (n + 1) / 2, w.p.get(), nw, v_words, Dp, o, Dp, true);
    }
  }

  const View<std::uint16_t> out = view<std::uint16_t>(t.out, st.out);
  for (int g = 0; g < group; ++g) {
    const int h = kv_head * group + g;
    for (int r = 0; r < m; ++r) {
      const float sum = w.row_sum[g * ts + r];
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const float* o = w.o + (g * ts + r) * Dp;
      std::uint16_t* dst = out.row(qt.begin + r, h);
      for (int col = 0; col < D; ++col)
        from_f32(o[col] * inv, dst + col);
      t.lse[h * tq + qt.begin + r] =
          sum > 0.0f ? (w.row_max[g * ts + r] + std::log2(sum)) * kLn2 : kNegInf;
    }
  }
}

void native_forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                    const ForwardStrides& st, float scale, int threads) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const int group = dims.heads_q / dims.heads_kv;
  const std::int64_t tq = plan.layout().total_q_tokens(), tk = plan.layout().total_tokens();
  const std::int64_t items = static_cast<std::int64_t>(plan.num_q_tiles()) * dims.heads_kv;
  CallScratch& scratch = call_scratch();
  const std::size_t kv_tiles_size = tiles_size(dims.heads_kv, plan.num_kv_tiles(), Dp, tsp);
  std::uint16_t* const kt_data = scratch.reserve<std::uint16_t>(0, kv_tiles_size);
  std::uint16_t* const v_data = scratch.reserve<std::uint16_t>(1, kv_tiles_size);
  std::vector<KeySpans> spans(static_cast<std::size_t>(tq));
  std::vector<std::uint8_t> q_bad(dims.heads_q * tq), k_bad(dims.heads_kv * tk),
      v_bad(dims.heads_kv * tk);
  PerThread<NativeForwardTiles> thread_tiles(threads, group, ts, tsp, Dp);
  PerThread<Bf16Staging> thread_staging(threads, tsp, Dp);
#pragma omp parallel num_threads(threads)
  {
    row_spans(plan, spans);
    Bf16Staging& staging = thread_staging.mine();
    const NativeForwardInputs in{
        stage_tiles_bf16(view<std::uint16_t>(t.k, st.k), plan, false, dims.heads_kv, D, Dp,
                         TileLayout::transposed_columns, kt_data, k_bad.data(), staging),
        stage_tiles_bf16(view<std::uint16_t>(t.v, st.v), plan, false, dims.heads_kv, D, Dp,
                         TileLayout::paired_rows, v_data, v_bad.data(), staging),
        static_cast<std::ptrdiff_t>(Dp) * tsp, spans, q_bad.data()};
    NativeForwardTiles& tiles = thread_tiles.mine();
    // Later tiles of a causal sequence see the most keys: start with them for balance.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = items - 1; item >= 0; --item) {
      native_forward_item(plan, dims, t, st, in, scale, static_cast<int>(item / dims.heads_kv),
                          static_cast<int>(item % dims.heads_kv), tiles);
    }
  }
  poison_forward(plan, dims, t, st, q_bad.data(), k_bad.data(), v_bad.data());
}

// --- backward ---------------------------------------------------------------------------------

struct NativeBackwardTiles {
  NativeBackwardTiles(int ts, int tsp, int Dp)
      : ws({std::size_t(Dp) * tsp, std::size_t(Dp) * tsp, std::size_t(ts) * tsp,
            std::size_t(ts) * tsp, std::size_t(ts), std::size_t(ts)}),
        dkt(ws[0]),
        dvt(ws[1]),
        p(ws[2]),
        ds(ws[3]),
        lse2(ws[4]),
        delta(ws[5]),
        p_pairs(make_aligned_array<std::uint32_t>(std::size_t(ts + 1) / 2 * tsp, true)),
        ds_pairs(make_aligned_array<std::uint32_t>(std::size_t(ts + 1) / 2 * tsp, true)),
        ds_rows(make_aligned_array<std::uint16_t>(std::size_t(ts) * tsp, true)) {}
  Workspace ws;
  float *dkt, *dvt;  // dK^T, dV^T of the key tile [Dp][tsp]
  float *p, *ds, *lse2, *delta;
  AlignedArray<std::uint32_t> p_pairs, ds_pairs;  // [ceil(m/2)][nw] words
  AlignedArray<std::uint16_t> ds_rows;            // [m][nw] bf16
};

struct NativeBackwardInputs {
  const std::uint16_t *q, *dout;    // rows [Hq][Tq][Dp]
  const std::uint16_t *qt, *doutt;  // transposed rows per query tile [Hq][q tiles][Dp][tsp]
  const std::uint16_t *kt, *vt;     // transposed columns per key tile [Hkv][kv tiles][Dp][tsp]
  const std::uint16_t* k;           // paired rows per key tile [Hkv][kv tiles][tsp][Dp]
  int Dp, tsp;                      // head dim and tile size, padded to the vector width
  std::ptrdiff_t tile_elems;        // Dp * tsp
  const float* delta;               // rowsum(dO * O) [Hq, Tq]
  DqAccumulator dq_acc;
  const std::vector<KeySpans>& spans;
};

struct NativePair {
  int q_tile, kv_tile;
  TileKind kind;
  ColumnWindow win;
  int m, n, nw;
};

NativePair native_pair(const BlockPlan& plan, const NativeBackwardInputs& in, int q_tile,
                       int kv_tile, TileKind kind) {
  const Tile& qt = plan.q_tile(q_tile);
  const Tile& kt = plan.kv_tile(kv_tile);
  const ColumnWindow win =
      kind == TileKind::partial
          ? column_window(plan.layout(), in.spans[qt.begin], in.spans[qt.end - 1], kt)
          : ColumnWindow{0, kt.size()};
  const int n = win.hi - win.lo;
  return {q_tile, kv_tile, kind, win, qt.size(), n, round_up(n, W)};
}

// pair_probabilities of kernels_backward.h on bf16 products: P into w.p and dS = P (dP - delta)
// into w.ds, both float32 [m, nw]; then what the caller's products take, rounded to bf16: P
// and dS as pairs of rows (for dV^T and dK^T), dS as rows (for dQ).
void native_probabilities(const BlockPlan& plan, const BackwardTensors& t,
                          const NativeBackwardInputs& in, float scale, const NativePair& pw, int h,
                          int kv_head, NativeBackwardTiles& w) {
  const AttentionLayout& layout = plan.layout();
  const Tile& qt = plan.q_tile(pw.q_tile);
  const Tile& kt = plan.kv_tile(pw.kv_tile);
  const int m = pw.m, nw = pw.nw;
  const int Dp = in.Dp, tsp = in.tsp;
  const std::int64_t row0 = h * layout.total_q_tokens() + qt.begin;
  pair_row_stats(t.lse, in.delta, row0, m, w.lse2, w.delta);
  const std::ptrdiff_t tile_at =
      (static_cast<std::ptrdiff_t>(kv_head) * plan.num_kv_tiles() + pw.kv_tile) * in.tile_elems;
  Bf16Gemm::run(m, nw, Dp / 2, in.q + row0 * Dp, Dp, words(in.kt + tile_at) + pw.win.lo, tsp, w.p,
                nw, false);
  scores_to_probabilities(w.p, m, pw.n, nw, w.lse2, scale, pw.kind == TileKind::partial,
                          in.spans.data() + qt.begin,
                          kt.begin - layout.seq_begin(kt.seq) + pw.win.lo);
  Bf16Gemm::run(m, nw, Dp / 2, in.dout + row0 * Dp, Dp, words(in.vt + tile_at) + pw.win.lo, tsp,
                w.ds, nw, false);
  dp_to_ds(w.p, w.ds, m, nw, w.delta);
  pack_pairs(w.p, m, nw, w.p_pairs.get());
  pack_pairs(w.ds, m, nw, w.ds_pairs.get());
  round_rows(w.ds, m, nw, w.ds_rows.get());
}

// dQ += dS K for the pair in w.ds_rows, into the float32 accumulator rows of head h.
void native_accumulate_dq(const BlockPlan& plan, const NativeBackwardInputs& in,
                          const NativePair& pw, int h, int kv_head, int Dp,
                          const NativeBackwardTiles& w) {
  const std::ptrdiff_t tile_at =
      (static_cast<std::ptrdiff_t>(kv_head) * plan.num_kv_tiles() + pw.kv_tile) * in.tile_elems;
  // dS's columns past n are 0, so the pairs may run to n rounded up.
  Bf16Gemm::run(pw.m, Dp, (pw.n + 1) / 2, w.ds_rows.get(), pw.nw,
                words(in.k + tile_at) + pw.win.lo / 2 * Dp, Dp,
                in.dq_acc.rows(h, plan.q_tile(pw.q_tile).begin), Dp, true);
}

// backward_kv_tile of kernels_backward.h: dK and dV of key tile j (transposed while they sum),
// and its dQ contributions, each in its turn.
void native_backward_kv_tile(const BlockPlan& plan, const AttentionDims& dims,
                             const BackwardTensors& t, const BackwardStrides& st,
                             const NativeBackwardInputs& in, float scale, int j, int kv_head,
                             DqTurns& turns, NativeBackwardTiles& w) {
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int tsp = round_up(plan.tile_size(), W);
  const int group = dims.heads_q / dims.heads_kv;
  const Tile& kt = plan.kv_tile(j);
  std::fill_n(w.dkt, Dp * tsp, 0.0f);
  std::fill_n(w.dvt, Dp * tsp, 0.0f);

  for (const TileRef& ref : plan.q_tiles_of(j)) {
    const NativePair pw = native_pair(plan, in, ref.tile, j, ref.kind);
    for (int g = 0; g < group; ++g) {
      const int h = kv_head * group + g;
      native_probabilities(plan, t, in, scale, pw, h, kv_head, w);
      const std::ptrdiff_t q_tile_at =
          (static_cast<std::ptrdiff_t>(h) * plan.num_q_tiles() + ref.tile) * in.tile_elems;
      // dV^T += dO^T P  [D, nw];  dK^T += Q^T dS  [D, nw]  (columns of the window)
      Bf16Gemm::run(D, pw.nw, (pw.m + 1) / 2, in.doutt + q_tile_at, tsp, w.p_pairs.get(), pw.nw,
                    w.dvt + pw.win.lo, tsp, true);
      Bf16Gemm::run(D, pw.nw, (pw.m + 1) / 2, in.qt + q_tile_at, tsp, w.ds_pairs.get(), pw.nw,
                    w.dkt + pw.win.lo, tsp, true);
      turns.in_turn(ref.tile, h, j, [&] { native_accumulate_dq(plan, in, pw, h, kv_head, Dp, w); });
    }
  }

  const View<std::uint16_t> dk = view<std::uint16_t>(t.dk, st.dk),
                            dv = view<std::uint16_t>(t.dv, st.dv);
  for (int r = 0; r < kt.size(); ++r) {
    std::uint16_t* dk_row = dk.row(kt.begin + r, kv_head);
    std::uint16_t* dv_row = dv.row(kt.begin + r, kv_head);
    for (int c = 0; c < D; ++c) {
      from_f32(w.dkt[c * tsp + r] * scale, dk_row + c);
      from_f32(w.dvt[c * tsp + r], dv_row + c);
    }
  }
}

void native_backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                     const BackwardStrides& st, float scale, int threads) {
  using U16 = std::uint16_t;
  const int D = dims.head_dim, Dp = round_up(D, W);
  const int ts = plan.tile_size(), tsp = round_up(ts, W);
  const std::int64_t tq = plan.layout().total_q_tokens(), tk = plan.layout().total_tokens();
  const int Hq = dims.heads_q, Hkv = dims.heads_kv;
  CallScratch& scratch = call_scratch();
  const std::size_t kv_tiles_size = tiles_size(Hkv, plan.num_kv_tiles(), Dp, tsp);
  const std::size_t q_tiles_size = tiles_size(Hq, plan.num_q_tiles(), Dp, tsp);
  float* const delta = scratch.reserve<float>(0, static_cast<std::size_t>(Hq) * tq);
  float* const dq_acc = scratch.reserve<float>(1, rows_size(Hq, tq, Dp));
  U16* const q_data = scratch.reserve<U16>(2, rows_size(Hq, tq, Dp));
  U16* const dout_data = scratch.reserve<U16>(3, rows_size(Hq, tq, Dp));
  U16* const qt_data = scratch.reserve<U16>(4, q_tiles_size);
  U16* const doutt_data = scratch.reserve<U16>(5, q_tiles_size);
  U16* const kt_data = scratch.reserve<U16>(6, kv_tiles_size);
  U16* const vt_data = scratch.reserve<U16>(7, kv_tiles_size);
  U16* const k_data = scratch.reserve<U16>(8, kv_tiles_size);
  std::vector<KeySpans> spans(static_cast<std::size_t>(tq));
  std::vector<std::uint8_t> q_bad(Hq * tq), dout_bad(Hq * tq), out_bad(Hq * tq), k_bad(Hkv * tk),
      v_bad(Hkv * tk);
  const View<const U16> q = view<U16>(t.q, st.q), k = view<U16>(t.k, st.k),
                        v = view<U16>(t.v, st.v), out = view<U16>(t.out, st.out),
                        dout = view<U16>(t.dout, st.dout);
  const BackwardSchedule schedule = backward_schedule(plan, dims, threads);
  DqTurns turns(plan, Hq);
  PerThread<NativeBackwardTiles> thread_tiles(threads, ts, tsp, Dp);
  PerThread<Bf16Staging> thread_staging(threads, tsp, Dp);

#pragma omp parallel num_threads(threads)
  {
    row_spans(plan, spans);
    Bf16Staging& staging = thread_staging.mine();
    const NativeBackwardInputs in{
        stage_rows_bf16(q, tq, Hq, D, Dp, q_data, q_bad.data()),
        stage_rows_bf16(dout, tq, Hq, D, Dp, dout_data, dout_bad.data()),
        stage_tiles_bf16(q, plan, true, Hq, D, Dp, TileLayout::transposed_rows, qt_data, nullptr,
                         staging),
        stage_tiles_bf16(dout, plan, true, Hq, D, Dp, TileLayout::transposed_rows, doutt_data,
                         nullptr, staging),
        stage_tiles_bf16(k, plan, false, Hkv, D, Dp, TileLayout::transposed_columns, kt_data,
                         k_bad.data(), staging),
        stage_tiles_bf16(v, plan, false, Hkv, D, Dp, TileLayout::transposed_columns, vt_data,
                         v_bad.data(), staging),
        stage_tiles_bf16(k, plan, false, Hkv, D, Dp, TileLayout::paired_rows, k_data, nullptr,
                         staging),
        Dp,
        tsp,
        static_cast<std::ptrdiff_t>(Dp) * tsp,
        delta,
        {dq_acc, tq, Dp},
        spans};
    delta_rows(out, dout, tq, Hq, D, Dp, delta, in.dq_acc, out_bad.data(), dout_bad.data());

    NativeBackwardTiles& tiles = thread_tiles.mine();
    schedule_backward(plan, Hkv, schedule, turns, [&](int j, int kv_head) {
      native_backward_kv_tile(plan, dims, t, st, in, scale, j, kv_head, turns, tiles);
    });
    write_dq(view<U16>(t.dq, st.dq), in.dq_acc, Hq, D, scale);
  }
  poison_backward(plan, dims, t, st, q_bad.data(), dout_bad.data(), out_bad.data(), k_bad.data(),
                  v_bad.data());
}
