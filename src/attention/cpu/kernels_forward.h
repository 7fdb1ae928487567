// The forward pass (FlashAttention-2's algorithm 1): one work item per (query tile, kv head),
// softmax steps over runs of key tiles, the row log-sum-exp saved for the backward.
//
// Part of kernels_impl.h: included inside its anonymous namespace, once per instruction set,
// after the parts above it there; no includes of its own.
#pragma once

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
  PerThread<ForwardTiles> thread_tiles(threads, group, ts, tsp, Dp);
#pragma omp parallel num_threads(threads)
  {
    row_spans(plan, spans);
    const ForwardInputs in{
        stage_columns(view<T>(t.k, st.k), plan, dims.heads_kv, D, Dp, kt_data, k_bad.data()),
        stage_rows(view<T>(t.v, st.v), tk, dims.heads_kv, D, Dp, v_data, v_bad.data()), spans,
        q_bad.data()};
    ForwardTiles& tiles = thread_tiles.mine();
    // Later tiles of a causal sequence see the most keys: start with them for balance.
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = items - 1; item >= 0; --item) {
      forward_item<T>(plan, dims, t, st, in, scale, static_cast<int>(item / dims.heads_kv),
                      static_cast<int>(item % dims.heads_kv), tiles);
    }
  }
  poison_forward(plan, dims, t, st, q_bad.data(), k_bad.data(), v_bad.data());
}
