#include "anchorctx/attention/block_plan.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "attention/test_support.h"

namespace anchorctx::attention {
namespace {

using test_support::LayoutOptions;
using test_support::random_layout;
using test_support::RandomLayout;
using test_support::test_seed;

const std::vector<Mask> kMasks = test_support::mask_variants(5);

// Tiles cut each sequence's rows [begin(b), begin(b) + len(b)) exactly, in order, full-size
// except the last of each sequence.
template <typename First, typename At, typename Begin, typename Len>
void check_tiling(int batch, int tile_size, int num_tiles, First first, At at, Begin begin,
                  Len len) {
  ASSERT_EQ(first(0), 0);
  for (int b = 0; b < batch; ++b) {
    std::int32_t pos = begin(b);
    const std::int32_t end = pos + len(b);
    ASSERT_LE(first(b), first(b + 1)) << "b=" << b;
    for (int t = first(b); t < first(b + 1); ++t) {
      const Tile& tile = at(t);
      ASSERT_EQ(tile.seq, b) << "tile " << t;
      ASSERT_EQ(tile.begin, pos) << "tile " << t;
      ASSERT_GT(tile.size(), 0) << "tile " << t;
      ASSERT_LE(tile.end, end) << "tile " << t;
      if (tile.end != end) {
        ASSERT_EQ(tile.size(), tile_size) << "tile " << t;
      }
      pos = tile.end;
    }
    ASSERT_EQ(pos, end) << "sequence " << b << " not covered";
  }
  ASSERT_EQ(num_tiles, first(batch));
}

// Checks every promise of block_plan.h against a brute-force scan of the oracle mask.
void check_plan(const RandomLayout& r, const Mask& mask, int tile_size) {
  SCOPED_TRACE(testing::Message() << test_support::describe_mask(mask) << " tile " << tile_size);
  const BlockPlan plan = BlockPlan::build(r.layout, mask, tile_size);
  const AttentionLayout& layout = r.layout;
  const int batch = layout.num_sequences();
  EXPECT_EQ(plan.mask(), mask);
  EXPECT_EQ(plan.tile_size(), tile_size);
  EXPECT_EQ(plan.layout().cu_seqlens(), layout.cu_seqlens());
  EXPECT_EQ(plan.layout().cu_seqlens_q(), layout.cu_seqlens_q());

  check_tiling(
      batch, tile_size, plan.num_q_tiles(), [&](int b) { return plan.first_q_tile(b); },
      [&](int t) -> const Tile& { return plan.q_tile(t); },
      [&](int b) { return layout.q_begin(b); }, [&](int b) { return layout.q_len(b); });
  check_tiling(
      batch, tile_size, plan.num_kv_tiles(), [&](int b) { return plan.first_kv_tile(b); },
      [&](int t) -> const Tile& { return plan.kv_tile(t); },
      [&](int b) { return layout.seq_begin(b); }, [&](int b) { return layout.seq_len(b); });
  if (testing::Test::HasFatalFailure()) return;

  // Each (q tile, kv tile) pair: listed iff some pair visible, full iff all are.
  std::vector<std::tuple<int, int, TileKind>> listed;  // (q, kv, kind) from kv_tiles_of
  std::int64_t partial = 0;
  for (int qt = 0; qt < plan.num_q_tiles(); ++qt) {
    const Tile& q_tile = plan.q_tile(qt);
    const auto refs = plan.kv_tiles_of(qt);
    for (std::size_t i = 0; i < refs.size(); ++i) {
      ASSERT_GE(refs[i].tile, 0);
      ASSERT_LT(refs[i].tile, plan.num_kv_tiles());
      if (i > 0) {
        ASSERT_LT(refs[i - 1].tile, refs[i].tile) << "kv tiles of " << qt << " not ascending";
      }
      listed.emplace_back(qt, refs[i].tile, refs[i].kind);
      partial += refs[i].kind == TileKind::partial;
    }
    std::size_t next = 0;  // walks refs in step with the ascending kv tiles
    for (int kt = 0; kt < plan.num_kv_tiles(); ++kt) {
      const Tile& kv_tile = plan.kv_tile(kt);
      bool any = false;
      bool all = true;
      if (kv_tile.seq == q_tile.seq) {
        const int b = q_tile.seq;
        const std::int32_t q_base = layout.q_begin(b), k_base = layout.seq_begin(b);
        for (std::int32_t q = q_tile.begin; q < q_tile.end; ++q) {
          for (std::int32_t k = kv_tile.begin; k < kv_tile.end; ++k) {
            const bool v = r.oracle_visible(mask, b, q - q_base, k - k_base);
            any |= v;
            all &= v;
          }
        }
      } else {
        all = false;
      }
      const bool present = next < refs.size() && refs[next].tile == kt;
      ASSERT_EQ(present, any) << "q tile " << qt << " [" << q_tile.begin << "," << q_tile.end
                              << ") kv tile " << kt << " [" << kv_tile.begin << "," << kv_tile.end
                              << ")";
      if (present) {
        ASSERT_EQ(refs[next].kind == TileKind::full, all)
            << "q tile " << qt << " [" << q_tile.begin << "," << q_tile.end << ") kv tile " << kt
            << " [" << kv_tile.begin << "," << kv_tile.end << ")";
        ++next;
      }
    }
  }
  EXPECT_EQ(plan.visited_pairs(), static_cast<std::int64_t>(listed.size()));
  EXPECT_EQ(plan.partial_pairs(), partial);

  // q_tiles_of is the transpose, kinds included.
  std::vector<std::tuple<int, int, TileKind>> transposed;
  for (int kt = 0; kt < plan.num_kv_tiles(); ++kt) {
    for (const TileRef& ref : plan.q_tiles_of(kt))
      transposed.emplace_back(ref.tile, kt, ref.kind);
  }
  std::sort(listed.begin(), listed.end());
  std::sort(transposed.begin(), transposed.end());
  EXPECT_EQ(listed, transposed);
}

TEST(BlockPlan, MatchesBruteForceOnRandomLayouts) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 24; ++trial) {
    LayoutOptions options;
    options.tile = trial % 2 == 0 ? 16 : 64;
    options.max_sequences = 4;
    options.max_seq_len = options.tile == 16 ? 150 : 400;
    options.allow_empty_sequences = true;
    options.fewer_queries = trial % 4 >= 2;
    const RandomLayout r = random_layout(rng, options);
    SCOPED_TRACE(r.describe());
    for (const Mask& mask : kMasks) {
      check_plan(r, mask, options.tile);
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(BlockPlan, HandPickedLayouts) {
  using I32 = std::vector<std::int32_t>;
  const struct {
    I32 cu_seqlens, cu_docs, doc_starts, anchor_lens;
  } cases[] = {
      // Exactly one tile; every token its own document; anchor 3.
      {{0, 16}, {0, 16}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {3}},
      // Documents ending exactly on tile edges.
      {{0, 48}, {0, 3}, {0, 16, 32}, {1}},
      // One token sequences beside a long one, anchor the whole short sequence.
      {{0, 1, 2, 40}, {0, 0, 0, 2}, {0, 17}, {1, 1, 0}},
      // The anchor is the whole sequence.
      {{0, 20}, {0, 2}, {0, 5}, {20}},
  };
  for (const auto& c : cases) {
    test_support::RandomLayout r;
    r.layout = AttentionLayout::from_arrays(c.cu_seqlens, c.cu_docs, c.doc_starts, c.anchor_lens);
    for (int b = 0; b < r.layout.num_sequences(); ++b) {
      const auto starts = r.layout.doc_starts(b);
      r.seqs.push_back({r.layout.seq_len(b), r.layout.seq_len(b), I32(starts.begin(), starts.end()),
                        r.layout.anchor_len(b)});
    }
    SCOPED_TRACE(r.describe());
    for (const Mask& mask : kMasks) {
      for (int tile : {1, 8, 16, 64})
        check_plan(r, mask, tile);
    }
  }
}

TEST(BlockPlan, CausalPlanIsTheLowerTriangle) {
  const auto layout = AttentionLayout::from_document_lengths({{100, 28}}, 0);
  const BlockPlan plan = BlockPlan::build(layout, MaskKind::causal, 64);
  ASSERT_EQ(plan.num_q_tiles(), 2);
  EXPECT_EQ(plan.visited_pairs(), 3);
  EXPECT_EQ(plan.partial_pairs(), 2);  // the diagonal tiles
  ASSERT_EQ(plan.kv_tiles_of(1).size(), 2u);
  EXPECT_EQ(plan.kv_tiles_of(1)[0].kind, TileKind::full);
  EXPECT_EQ(plan.kv_tiles_of(1)[1].kind, TileKind::partial);
}

// One-token decode against 200 keys: one query tile that visits exactly the key tiles holding
// its document and the anchor; the last key is the query itself, so the last tile is full.
TEST(BlockPlan, DecodeRowVisitsItsDocumentAndTheAnchor) {
  using I32 = std::vector<std::int32_t>;
  const auto layout =
      AttentionLayout::from_arrays(I32{0, 1}, I32{0, 200}, I32{0, 2}, I32{0, 130}, I32{1});
  const BlockPlan plan = BlockPlan::build(layout, MaskKind::anchor, 64);
  ASSERT_EQ(plan.num_q_tiles(), 1);
  ASSERT_EQ(plan.num_kv_tiles(), 4);
  const auto refs = plan.kv_tiles_of(0);
  ASSERT_EQ(refs.size(), 3u);  // anchor tile 0, then tiles 2 and 3 (document [130, 200))
  EXPECT_EQ(refs[0].tile, 0);
  EXPECT_EQ(refs[1].tile, 2);
  EXPECT_EQ(refs[2].tile, 3);
  EXPECT_EQ(refs[0].kind, TileKind::partial);  // one anchor column
  EXPECT_EQ(refs[1].kind, TileKind::partial);  // the document starts at 130
  EXPECT_EQ(refs[2].kind, TileKind::full);
  EXPECT_EQ(plan.q_tile(0).begin, 0);
  EXPECT_EQ(plan.q_tile(0).end, 1);
}

}  // namespace
}  // namespace anchorctx::attention
