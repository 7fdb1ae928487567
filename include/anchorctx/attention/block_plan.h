// BlockPlan: the mask as data, built once per batch and shared by every layer and head (the
// idea of FlexAttention's BlockMask). The queries and the keys of every sequence are cut into
// tiles of `tile_size` tokens (the last one of a sequence may be shorter; tiles never cross
// sequences; with queries == keys the two tilings are the same). For each query tile the plan
// lists the key tiles it must visit, in ascending order, each marked `full` (every pair
// visible: no mask to apply) or `partial`; tiles with no visible pair are absent, which is how
// masked work is skipped. The transpose (for each key tile, its query tiles) drives the
// backward pass. Which pairs are visible comes from visible_keys (mask.h) of each query tile's
// first and last rows alone, which its promises (monotone spans) make exact.
//
// Building costs O(tiles x log(documents) + visited tiles); no Tq x Tk mask is ever formed.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

enum class TileKind : std::uint8_t { full, partial };

struct TileRef {
  std::int32_t tile;  // global index of a key tile (kv_tiles_of) or query tile (q_tiles_of)
  TileKind kind;
};

struct Tile {
  std::int32_t seq;    // sequence index
  std::int32_t begin;  // first token, global row of q (query tile) or of k and v (key tile)
  std::int32_t end;    // one past the last token
  std::int32_t size() const { return end - begin; }
};

class BlockPlan {
 public:
  static constexpr int kDefaultTileSize = 64;
  // The largest tile build accepts. The kernels take any size from 1 (they pad a tile to their
  // vector width themselves), but each thread's scratch grows with the tile squared (a score
  // tile of ts x ts floats: 4 MiB at 1024) and with the query heads per kv head x ts x D, and
  // every sequence's last key tile is staged padded to ts: 1024 is 16 times the default and 8
  // times FlashAttention-2's 128, while 65536 took 16 GiB for 8 tokens and 1048576 could not be
  // allocated at all.
  static constexpr int kMaxTileSize = 1024;

  static BlockPlan build(const AttentionLayout& layout, const Mask& mask,
                         int tile_size = kDefaultTileSize);

  const AttentionLayout& layout() const { return layout_; }
  const Mask& mask() const { return mask_; }
  int tile_size() const { return tile_size_; }

  int num_q_tiles() const { return static_cast<int>(q_tiles_.size()); }
  const Tile& q_tile(int t) const { return q_tiles_[t]; }
  // Query tiles of sequence b: [first_q_tile(b), first_q_tile(b + 1)).
  int first_q_tile(int b) const { return seq_first_q_tile_[b]; }

  int num_kv_tiles() const { return static_cast<int>(kv_tiles_.size()); }
  const Tile& kv_tile(int t) const { return kv_tiles_[t]; }
  // Key tiles of sequence b: [first_kv_tile(b), first_kv_tile(b + 1)).
  int first_kv_tile(int b) const { return seq_first_kv_tile_[b]; }

  std::span<const TileRef> kv_tiles_of(int q_tile) const {
    return {kv_.data() + kv_offsets_[q_tile], kv_.data() + kv_offsets_[q_tile + 1]};
  }
  std::span<const TileRef> q_tiles_of(int kv_tile) const {
    return {q_.data() + q_offsets_[kv_tile], q_.data() + q_offsets_[kv_tile + 1]};
  }

  // Tile pairs visited (full + partial): the work the kernels do, in tiles.
  std::int64_t visited_pairs() const { return static_cast<std::int64_t>(kv_.size()); }
  std::int64_t partial_pairs() const { return partial_pairs_; }

 private:
  AttentionLayout layout_;
  Mask mask_;
  int tile_size_ = kDefaultTileSize;
  std::vector<Tile> q_tiles_, kv_tiles_;
  std::vector<std::int32_t> seq_first_q_tile_, seq_first_kv_tile_;  // [B+1] each
  std::vector<std::int64_t> kv_offsets_;                            // [q tiles+1] into kv_
  std::vector<TileRef> kv_;
  std::vector<std::int64_t> q_offsets_;  // [kv tiles+1] into q_
  std::vector<TileRef> q_;
  std::int64_t partial_pairs_ = 0;
};

}  // namespace anchorctx::attention
