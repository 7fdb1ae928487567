// The backward pass (FlashAttention-2's algorithm 2): per key tile of one kv head, P and dS
// recomputed, dV, dK and dQ accumulated; dQ in ascending key-tile order (dq_turns.h).
//
// Part of kernels_impl.h: included inside its anonymous namespace, once per instruction set,
// after the parts above it there; no includes of its own.
#pragma once

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
  PerThread<BackwardTiles> thread_tiles(threads, ts, tsp, Dp);

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

    BackwardTiles& tiles = thread_tiles.mine();
    schedule_backward(plan, Hkv, schedule, turns, [&](int j, int kv_head) {
      backward_kv_tile<T>(plan, dims, t, st, in, scale, j, kv_head, turns, tiles);
    });
    write_dq(view<T>(t.dq, st.dq), in.dq_acc, Hq, D, scale);
  }
  poison_backward(plan, dims, t, st, q_bad.data(), dout_bad.data(), out_bad.data(), k_bad.data(),
                  v_bad.data());
}
