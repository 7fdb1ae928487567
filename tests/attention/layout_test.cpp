#include "anchorctx/attention/layout.h"

#include <climits>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "attention/test_support.h"

namespace anchorctx::attention {
namespace {

using test_support::LayoutOptions;
using test_support::random_layout;
using test_support::test_seed;
using I32 = std::vector<std::int32_t>;

constexpr MaskKind kMasks[] = {MaskKind::causal, MaskKind::intra_doc, MaskKind::anchor};

// from_arrays must throw anchorctx::Error whose message names `array`.
void expect_rejected(const I32& cu_seqlens, const I32& cu_docs, const I32& doc_starts,
                     const I32& anchor_lens, const std::string& array) {
  try {
    AttentionLayout::from_arrays(cu_seqlens, cu_docs, doc_starts, anchor_lens);
    ADD_FAILURE() << fmt::format(
        "accepted cu_seqlens {} cu_docs {} doc_starts {} anchor_lens {}; expected an error "
        "naming {}",
        cu_seqlens, cu_docs, doc_starts, anchor_lens, array);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(array), std::string::npos)
        << "message \"" << e.what() << "\" does not name " << array;
  }
}

TEST(LayoutFromArrays, RejectsBadCuSeqlens) {
  expect_rejected({}, {0}, {}, {}, "cu_seqlens");               // no B+1 entries at all
  expect_rejected({1, 5}, {0, 0}, {}, {}, "cu_seqlens");        // not starting at 0
  expect_rejected({0, 5, 3}, {0, 0, 0}, {}, {}, "cu_seqlens");  // decreasing
  expect_rejected({0, -1}, {0, 0}, {}, {}, "cu_seqlens");       // negative
  expect_rejected({-2, 4}, {0, 0}, {}, {}, "cu_seqlens");       // negative start
  expect_rejected({0, 4, 8, 6, 9}, {0, 0, 0, 0, 0}, {}, {}, "cu_seqlens");
}

TEST(LayoutFromArrays, RejectsBadDocStarts) {
  expect_rejected({0, 10}, {0, 3}, {0, 4, 4}, {}, "doc_starts");  // repeated
  expect_rejected({0, 10}, {0, 3}, {0, 6, 2}, {}, "doc_starts");  // decreasing
  expect_rejected({0, 10}, {0, 2}, {0, 10}, {}, "doc_starts");    // at the sequence end
  expect_rejected({0, 10}, {0, 2}, {0, 12}, {}, "doc_starts");    // past it
  expect_rejected({0, 10}, {0, 1}, {-1}, {}, "doc_starts");       // negative
  // Local offsets: a start valid as a global index but not inside its own sequence.
  expect_rejected({0, 4, 10}, {0, 1, 2}, {0, 7}, {}, "doc_starts");
  // An empty sequence can hold no document start.
  expect_rejected({0, 0, 5}, {0, 1, 1}, {0}, {}, "doc_starts");
}

TEST(LayoutFromArrays, RejectsBadCuDocs) {
  expect_rejected({0, 10}, {0}, {}, {}, "cu_docs");               // too short
  expect_rejected({0, 10}, {0, 0, 0}, {}, {}, "cu_docs");         // too long
  expect_rejected({0, 10}, {1, 1}, {0}, {}, "cu_docs");           // not starting at 0
  expect_rejected({0, 5, 10}, {0, 2, 1}, {0, 2}, {}, "cu_docs");  // decreasing
  expect_rejected({0, 5, 10}, {0, -1, 0}, {}, {}, "cu_docs");     // negative
  expect_rejected({0, 10}, {0, 3}, {0, 4}, {}, "cu_docs");        // past doc_starts
  expect_rejected({0, 10}, {0, 1}, {0, 4}, {}, "cu_docs");        // doc_starts left over
}

TEST(LayoutFromArrays, RejectsBadAnchorLens) {
  expect_rejected({0, 10}, {0, 0}, {}, {11}, "anchor_lens");           // longer than the sequence
  expect_rejected({0, 10}, {0, 0}, {}, {-1}, "anchor_lens");           // negative
  expect_rejected({0, 10, 12}, {0, 0, 0}, {}, {1, 3}, "anchor_lens");  // second sequence too short
  expect_rejected({0, 10, 12}, {0, 0, 0}, {}, {1}, "anchor_lens");     // wrong count
  expect_rejected({0, 10}, {0, 0}, {}, {1, 1}, "anchor_lens");         // wrong count
}

TEST(LayoutFromArrays, AcceptsAndNormalises) {
  // Sequence 0: no list (one document); 1: a list without the leading 0; 2: empty sequence;
  // 3: a full list; anchors up to the whole sequence.
  const auto layout = AttentionLayout::from_arrays(I32{0, 5, 12, 12, 20}, I32{0, 0, 2, 2, 5},
                                                   I32{3, 6, 0, 1, 7}, I32{5, 0, 0, 2});
  ASSERT_EQ(layout.num_sequences(), 4);
  EXPECT_EQ(layout.total_tokens(), 20);
  EXPECT_EQ(layout.seq_begin(1), 5);
  EXPECT_EQ(layout.seq_len(1), 7);
  EXPECT_EQ(layout.seq_len(2), 0);
  EXPECT_EQ(layout.anchor_len(0), 5);
  EXPECT_EQ(layout.anchor_len(3), 2);
  EXPECT_EQ(I32(layout.doc_starts(0).begin(), layout.doc_starts(0).end()), (I32{0}));
  EXPECT_EQ(I32(layout.doc_starts(1).begin(), layout.doc_starts(1).end()), (I32{0, 3, 6}));
  EXPECT_TRUE(layout.doc_starts(2).empty());
  EXPECT_EQ(I32(layout.doc_starts(3).begin(), layout.doc_starts(3).end()), (I32{0, 1, 7}));
  EXPECT_EQ(layout.num_documents(1), 3);
  EXPECT_EQ(layout.num_documents(2), 0);
  EXPECT_EQ(layout.doc_start_of(1, 0), 0);
  EXPECT_EQ(layout.doc_start_of(1, 2), 0);
  EXPECT_EQ(layout.doc_start_of(1, 3), 3);
  EXPECT_EQ(layout.doc_start_of(1, 6), 6);
  EXPECT_EQ(layout.doc_start_of(3, 6), 1);
  // Empty anchor_lens means no anchors.
  const auto plain = AttentionLayout::from_arrays(I32{0, 4, 9}, I32{0, 0, 0}, I32{}, I32{});
  EXPECT_EQ(plain.anchor_len(0), 0);
  EXPECT_EQ(plain.anchor_len(1), 0);
  // An empty batch is a valid (if useless) layout.
  const auto empty = AttentionLayout::from_arrays(I32{0}, I32{0}, I32{}, I32{});
  EXPECT_EQ(empty.num_sequences(), 0);
  EXPECT_EQ(empty.total_tokens(), 0);
}

TEST(LayoutFromDocumentLengths, MatchesFromArrays) {
  const auto a = AttentionLayout::from_document_lengths({{3, 1, 4}, {1}, {5, 9}}, 2);
  const auto b = AttentionLayout::from_arrays(I32{0, 8, 9, 23}, I32{0, 3, 4, 6},
                                              I32{0, 3, 4, 0, 0, 5}, I32{2, 1, 2});
  EXPECT_EQ(a.cu_seqlens(), b.cu_seqlens());
  EXPECT_EQ(a.cu_docs(), b.cu_docs());
  EXPECT_EQ(a.all_doc_starts(), b.all_doc_starts());
  EXPECT_EQ(a.anchor_lens(), b.anchor_lens());  // anchor clamped to the one-token sequence
  EXPECT_THROW(AttentionLayout::from_document_lengths({{3, 0}}, 0), Error);
  EXPECT_THROW(AttentionLayout::from_document_lengths({{3, -2}}, 0), Error);
}

TEST(LayoutMask, VisibleFollowsTheDefinition) {
  // One sequence: docs [0,3) [3,5) [5,8), anchor 2.
  const auto layout = AttentionLayout::from_arrays(I32{0, 8}, I32{0, 3}, I32{0, 3, 5}, I32{2});
  EXPECT_TRUE(layout.visible(MaskKind::causal, 0, 7, 0));
  EXPECT_FALSE(layout.visible(MaskKind::causal, 0, 3, 4));
  EXPECT_TRUE(layout.visible(MaskKind::intra_doc, 0, 4, 3));
  EXPECT_FALSE(layout.visible(MaskKind::intra_doc, 0, 4, 2));
  EXPECT_FALSE(layout.visible(MaskKind::intra_doc, 0, 5, 0));
  EXPECT_TRUE(layout.visible(MaskKind::anchor, 0, 5, 0));
  EXPECT_TRUE(layout.visible(MaskKind::anchor, 0, 5, 1));
  EXPECT_FALSE(layout.visible(MaskKind::anchor, 0, 5, 2));  // third token is not an anchor
  EXPECT_FALSE(layout.visible(MaskKind::anchor, 0, 1, 2));  // still causal
  EXPECT_TRUE(layout.visible(MaskKind::anchor, 0, 5, 5));
  EXPECT_EQ(layout.visible_pairs(MaskKind::causal), 36);
  EXPECT_EQ(layout.visible_pairs(MaskKind::intra_doc), 6 + 3 + 6);
  EXPECT_EQ(layout.visible_pairs(MaskKind::anchor), 15 + 2 * 2 + 3 * 2);
  // Sliding window of 2: itself and the key before it, anchors still visible.
  const Mask window{MaskKind::anchor, 2, true};
  EXPECT_TRUE(layout.visible(window, 0, 7, 6));
  EXPECT_FALSE(layout.visible(window, 0, 7, 5));
  EXPECT_TRUE(layout.visible(window, 0, 7, 1));  // anchor
  // Non-causal: the whole document, anchors too, nothing of the next document.
  const Mask whole{MaskKind::intra_doc, 0, false};
  EXPECT_TRUE(layout.visible(whole, 0, 3, 4));
  EXPECT_FALSE(layout.visible(whole, 0, 4, 5));
  EXPECT_EQ(layout.visible_pairs(whole), 9 + 4 + 9);
}

TEST(LayoutQueries, QueriesAreTheLastKeys) {
  // Keys: docs [0,3) [3,5) [5,8), anchor 2; queries: the last 3 keys (5, 6, 7).
  const auto layout =
      AttentionLayout::from_arrays(I32{0, 3}, I32{0, 8}, I32{0, 3}, I32{0, 3, 5}, I32{2});
  EXPECT_FALSE(layout.queries_are_keys());
  EXPECT_EQ(layout.total_q_tokens(), 3);
  EXPECT_EQ(layout.total_tokens(), 8);
  EXPECT_EQ(layout.q_offset(0), 5);
  EXPECT_TRUE(layout.visible(MaskKind::anchor, 0, 0, 5));   // query 0 is key 5
  EXPECT_FALSE(layout.visible(MaskKind::anchor, 0, 0, 6));  // causal in key positions
  EXPECT_TRUE(layout.visible(MaskKind::anchor, 0, 0, 1));   // anchor
  EXPECT_FALSE(layout.visible(MaskKind::anchor, 0, 2, 4));  // previous document
  EXPECT_TRUE(layout.visible(MaskKind::causal, 0, 2, 0));
  EXPECT_EQ(layout.visible_pairs(MaskKind::causal), 6 + 7 + 8);
  EXPECT_EQ(layout.visible_pairs(MaskKind::anchor), (1 + 2) + (2 + 2) + (3 + 2));
  // More queries than keys, or a broken query array, are refused by name.
  for (const I32& cu_q : {I32{0, 9}, I32{1, 3}, I32{0}, I32{0, -1}}) {
    try {
      AttentionLayout::from_arrays(cu_q, I32{0, 8}, I32{0, 0}, I32{}, I32{});
      ADD_FAILURE() << "accepted cu_seqlens_q " << fmt::format("{}", cu_q);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cu_seqlens_q"), std::string::npos) << e.what();
    }
  }
}

// A window longer than any sequence is no window, up to INT32_MAX: pos + window overflowed
// int32 and every query past the first saw no key.
TEST(LayoutMask, AHugeWindowIsNoWindow) {
  const RowFacts row{.pos = 5, .doc_start = 3, .doc_end = 9, .seq_len = 12, .anchor_len = 1};
  for (const MaskKind kind : {MaskKind::causal, MaskKind::intra_doc, MaskKind::anchor})
    for (const bool causal : {true, false})
      for (const std::int32_t window : {12, 1 << 30, INT32_MAX - 1, INT32_MAX}) {
        const KeySpans none = visible_keys(Mask(kind, 0, causal), row);
        const KeySpans huge = visible_keys(Mask(kind, window, causal), row);
        EXPECT_EQ(std::tuple(huge.anchor_end, huge.lo, huge.hi),
                  std::tuple(none.anchor_end, none.lo, none.hi))
            << "window " << window;
      }
}

// The promises mask.h makes every rule keep (the plan and the kernels rely on them): a query
// sees itself, and lo, hi and anchor_end never decrease as the query moves right.
TEST(LayoutMask, SpansKeepTheirPromises) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    LayoutOptions options;
    options.max_seq_len = 120;
    options.tile = 16;
    const auto r = random_layout(rng, options);
    SCOPED_TRACE(r.describe());
    for (const Mask& mask : test_support::mask_variants(1 + trial % 7)) {
      SCOPED_TRACE(test_support::describe_mask(mask));
      for (int b = 0; b < r.layout.num_sequences(); ++b) {
        for (std::int32_t q = 0; q < r.layout.q_len(b); ++q) {
          const KeySpans s = r.layout.visible_keys(mask, b, q);
          ASSERT_TRUE(s.contains(q + r.layout.q_offset(b))) << "q=" << q;
          ASSERT_LE(s.anchor_end, s.hi) << "q=" << q;
          if (q == 0) continue;
          const KeySpans p = r.layout.visible_keys(mask, b, q - 1);
          ASSERT_TRUE(p.lo <= s.lo && p.hi <= s.hi && p.anchor_end <= s.anchor_end) << "q=" << q;
        }
      }
    }
  }
}

TEST(LayoutMask, MatchesBruteForceOnRandomLayouts) {
  const std::uint64_t seed = test_seed();
  SCOPED_TRACE(testing::Message() << "seed=" << seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 40; ++trial) {
    LayoutOptions options;
    options.max_sequences = 4;
    options.max_seq_len = 120;
    options.tile = trial % 2 == 0 ? 16 : 64;
    options.anchor_lens = {0, 1, 3, 7};
    options.allow_empty_sequences = true;
    options.fewer_queries = trial % 3 == 2;
    const auto r = random_layout(rng, options);
    SCOPED_TRACE(r.describe());
    const auto& layout = r.layout;
    ASSERT_EQ(layout.num_sequences(), static_cast<int>(r.seqs.size()));
    for (int b = 0; b < layout.num_sequences(); ++b) {
      ASSERT_EQ(layout.seq_len(b), r.seqs[b].len);
      ASSERT_EQ(layout.anchor_len(b), r.seqs[b].anchor_len);
      const auto starts = layout.doc_starts(b);
      ASSERT_EQ(I32(starts.begin(), starts.end()), r.seqs[b].doc_starts);
      for (std::int32_t pos = 0; pos < r.seqs[b].len; ++pos) {
        ASSERT_EQ(layout.doc_start_of(b, pos), r.oracle_doc_start(b, pos))
            << "b=" << b << " pos=" << pos;
      }
    }
    for (const Mask& mask : test_support::mask_variants(1 + trial % 9)) {
      std::int64_t count = 0;
      for (int b = 0; b < layout.num_sequences(); ++b) {
        const std::int32_t len = r.seqs[b].len;
        ASSERT_EQ(layout.q_len(b), r.seqs[b].q_len);
        for (std::int32_t q = 0; q < r.seqs[b].q_len; ++q) {
          for (std::int32_t k = 0; k < len; ++k) {
            const bool expected = r.oracle_visible(mask, b, q, k);
            ASSERT_EQ(layout.visible(mask, b, q, k), expected)
                << test_support::describe_mask(mask) << " b=" << b << " q=" << q << " k=" << k;
            count += expected;
          }
        }
      }
      EXPECT_EQ(layout.visible_pairs(mask), count) << test_support::describe_mask(mask);
    }
  }
}

TEST(MaskKindNames, ParseAndPrint) {
  EXPECT_EQ(parse_mask_kind("causal"), MaskKind::causal);
  EXPECT_EQ(parse_mask_kind("intra_doc"), MaskKind::intra_doc);
  EXPECT_EQ(parse_mask_kind("intra-doc"), MaskKind::intra_doc);
  EXPECT_EQ(parse_mask_kind("anchor"), MaskKind::anchor);
  EXPECT_EQ(parse_mask_kind(""), std::nullopt);
  EXPECT_EQ(parse_mask_kind("Causal"), std::nullopt);
  EXPECT_EQ(parse_mask_kind("full"), std::nullopt);
  for (MaskKind mask : kMasks)
    EXPECT_EQ(parse_mask_kind(to_string(mask)), mask);
}

}  // namespace
}  // namespace anchorctx::attention
