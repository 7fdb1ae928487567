// Which keys each query row sees (row_spans, from mask.h's visible_keys) and the masking of a
// tile's scores to them.
//
// Part of kernels_impl.h: included inside its anonymous namespace, once per instruction set,
// after the parts above it there; no includes of its own.
#pragma once

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
