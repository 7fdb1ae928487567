#include "anchorctx/attention/block_plan.h"

#include <algorithm>

#include "anchorctx/core/error.h"

namespace anchorctx::attention {
namespace {

// Cuts rows [begin, begin + len) of sequence b into tiles.
void cut(std::vector<Tile>& tiles, int b, std::int32_t begin, std::int32_t len, int tile_size) {
  for (std::int32_t t = 0; t < len; t += tile_size)
    tiles.push_back({b, begin + t, begin + std::min(t + tile_size, len)});
}

}  // namespace

BlockPlan BlockPlan::build(const AttentionLayout& layout, const Mask& mask, int tile_size) {
  require(tile_size >= 1 && tile_size <= kMaxTileSize,
          "block plan: tile size {} is out of range: 1 to {}", tile_size, kMaxTileSize);
  require(mask.window >= 0, "block plan: mask window {} is negative (0: unlimited)", mask.window);
  BlockPlan plan;
  plan.layout_ = layout;
  plan.mask_ = mask;
  plan.tile_size_ = tile_size;

  const int batch = layout.num_sequences();
  for (int b = 0; b < batch; ++b) {
    plan.seq_first_q_tile_.push_back(plan.num_q_tiles());
    plan.seq_first_kv_tile_.push_back(plan.num_kv_tiles());
    cut(plan.q_tiles_, b, layout.q_begin(b), layout.q_len(b), tile_size);
    cut(plan.kv_tiles_, b, layout.seq_begin(b), layout.seq_len(b), tile_size);
  }
  plan.seq_first_q_tile_.push_back(plan.num_q_tiles());
  plan.seq_first_kv_tile_.push_back(plan.num_kv_tiles());

  // Forward lists. The spans of mask.h never shrink as the row grows and every row sees
  // itself, so the keys some row of a query tile sees are [0, last.anchor_end) and
  // [first.lo, last.hi) (each row's [lo, hi) touches the next one's), and a key tile is seen
  // whole by every row iff it ends by first.hi and lies in the anchors or at or after last.lo.
  plan.kv_offsets_.reserve(plan.q_tiles_.size() + 1);
  plan.kv_offsets_.push_back(0);
  for (int b = 0; b < batch; ++b) {
    const int first_kv = plan.seq_first_kv_tile_[b];
    const std::int32_t len = layout.seq_len(b);
    for (int i = plan.seq_first_q_tile_[b]; i < plan.seq_first_q_tile_[b + 1]; ++i) {
      const Tile& qt = plan.q_tiles_[i];
      const KeySpans first = layout.visible_keys(mask, b, qt.begin - layout.q_begin(b));
      const KeySpans last = layout.visible_keys(mask, b, qt.end - 1 - layout.q_begin(b));
      auto add = [&](int local_j) {
        const std::int32_t c0 = local_j * tile_size;
        const std::int32_t c1 = std::min(c0 + tile_size, len);
        const bool full = c1 <= first.hi &&
                          (c1 <= last.anchor_end || c0 >= last.lo || last.anchor_end >= last.lo);
        plan.kv_.push_back({first_kv + local_j, full ? TileKind::full : TileKind::partial});
        if (!full) ++plan.partial_pairs_;
      };
      const int anchor_tiles = (last.anchor_end + tile_size - 1) / tile_size;
      const int lo_tile = first.lo / tile_size, hi_tile = (last.hi - 1) / tile_size;
      for (int j = 0; j < std::min(anchor_tiles, lo_tile); ++j)
        add(j);
      for (int j = lo_tile; j <= hi_tile; ++j)
        add(j);
      plan.kv_offsets_.push_back(static_cast<std::int64_t>(plan.kv_.size()));
    }
  }

  // Transpose by counting: for each key tile, its query tiles in ascending order.
  plan.q_offsets_.assign(plan.kv_tiles_.size() + 1, 0);
  for (const TileRef& ref : plan.kv_)
    ++plan.q_offsets_[ref.tile + 1];
  for (std::size_t t = 0; t < plan.kv_tiles_.size(); ++t)
    plan.q_offsets_[t + 1] += plan.q_offsets_[t];
  plan.q_.resize(plan.kv_.size());
  std::vector<std::int64_t> cursor(plan.q_offsets_.begin(), plan.q_offsets_.end() - 1);
  for (int i = 0; i < plan.num_q_tiles(); ++i) {
    for (const TileRef& ref : plan.kv_tiles_of(i))
      plan.q_[cursor[ref.tile]++] = {i, ref.kind};
  }
  return plan;
}

}  // namespace anchorctx::attention
