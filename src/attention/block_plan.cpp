#include "anchorctx/attention/block_plan.h"

#include <algorithm>

#include "anchorctx/core/error.h"

namespace anchorctx::attention {
namespace {

// Whether every (row, col) of rows [r0, r1) x cols [c0, c1) is visible, for a non-empty pair.
// Causally, the last column must not pass the first row. Beyond that, the row that sees the
// fewest columns is the last one (document starts only grow with the row): every column must
// be an anchor (< anchor_len) or inside that row's document (>= its start).
bool all_visible(MaskKind mask, std::int32_t r0, std::int32_t c0, std::int32_t c1,
                 std::int32_t last_row_doc_start, std::int32_t anchor_len) {
  if (c1 - 1 > r0) return false;
  if (mask == MaskKind::causal) return true;
  const std::int32_t anchor = mask == MaskKind::anchor ? anchor_len : 0;
  if (anchor >= last_row_doc_start) return true;
  return c1 <= anchor || c0 >= last_row_doc_start;
}

}  // namespace

BlockPlan BlockPlan::build(const AttentionLayout& layout, MaskKind mask, int tile_size) {
  require(tile_size >= 1, "block plan: tile size {} must be positive", tile_size);
  BlockPlan plan;
  plan.layout_ = layout;
  plan.mask_ = mask;
  plan.tile_size_ = tile_size;

  const int batch = layout.num_sequences();
  plan.seq_first_tile_.reserve(batch + 1);
  for (int b = 0; b < batch; ++b) {
    plan.seq_first_tile_.push_back(plan.num_tiles());
    for (std::int32_t t = 0; t < layout.seq_len(b); t += tile_size) {
      const std::int32_t begin = layout.seq_begin(b) + t;
      plan.tiles_.push_back(
          {b, begin, std::min(begin + tile_size, layout.seq_begin(b) + layout.seq_len(b))});
    }
  }
  plan.seq_first_tile_.push_back(plan.num_tiles());

  // Forward lists: for each q tile, the candidate key tiles are the anchor tiles and the tiles
  // from the one holding the first row's document start up to the diagonal. Every candidate
  // shares at least one visible pair with the q tile's first row, so none is empty.
  plan.kv_offsets_.reserve(plan.tiles_.size() + 1);
  plan.kv_offsets_.push_back(0);
  for (int b = 0; b < batch; ++b) {
    const int first = plan.seq_first_tile_[b];
    const std::int32_t base = layout.seq_begin(b);
    const std::int32_t anchor = mask == MaskKind::anchor ? layout.anchor_len(b) : 0;
    const int anchor_tiles = (anchor + tile_size - 1) / tile_size;
    for (int i = first; i < plan.seq_first_tile_[b + 1]; ++i) {
      const std::int32_t r0 = plan.tiles_[i].begin - base;
      const std::int32_t r1 = plan.tiles_[i].end - base;
      const std::int32_t first_doc = mask == MaskKind::causal ? 0 : layout.doc_start_of(b, r0);
      const std::int32_t last_doc = mask == MaskKind::causal ? 0 : layout.doc_start_of(b, r1 - 1);
      const int local_i = i - first;
      const int doc_tile = first_doc / tile_size;
      auto add = [&](int local_j) {
        const std::int32_t c0 = local_j * tile_size;
        const std::int32_t c1 = std::min(c0 + tile_size, layout.seq_len(b));
        const bool full = all_visible(mask, r0, c0, c1, last_doc, layout.anchor_len(b));
        plan.kv_.push_back({first + local_j, full ? TileKind::full : TileKind::partial});
        if (!full) ++plan.partial_pairs_;
      };
      for (int j = 0; j < std::min(anchor_tiles, doc_tile); ++j)
        add(j);
      for (int j = doc_tile; j <= local_i; ++j)
        add(j);
      plan.kv_offsets_.push_back(static_cast<std::int64_t>(plan.kv_.size()));
    }
  }

  // Transpose by counting: for each key tile, its query tiles in ascending order.
  plan.q_offsets_.assign(plan.tiles_.size() + 1, 0);
  for (const TileRef& ref : plan.kv_)
    ++plan.q_offsets_[ref.tile + 1];
  for (std::size_t t = 0; t < plan.tiles_.size(); ++t)
    plan.q_offsets_[t + 1] += plan.q_offsets_[t];
  plan.q_.resize(plan.kv_.size());
  std::vector<std::int64_t> cursor(plan.q_offsets_.begin(), plan.q_offsets_.end() - 1);
  for (int i = 0; i < plan.num_tiles(); ++i) {
    for (const TileRef& ref : plan.kv_tiles_of(i))
      plan.q_[cursor[ref.tile]++] = {i, ref.kind};
  }
  return plan;
}

}  // namespace anchorctx::attention
