// Packer: window sizes, skipped short documents, truncation and continuation, anchor modes,
// interleaving rules, tag loss masks, determinism.
#include "anchorctx/data/packer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>

#include "anchorctx/core/error.h"

namespace anchorctx::data {
namespace {

constexpr std::int32_t kAnchor = 999;

struct Captured {
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> starts;
  std::vector<std::pair<std::int32_t, std::int32_t>> spans;
};

// Documents whose token k of document d is d * 10000 + k: every token says where it came from.
TokenizedDoc doc_of(std::int32_t d, std::int32_t len, std::int32_t masked = 0) {
  TokenizedDoc doc;
  for (std::int32_t k = 0; k < len; ++k)
    doc.tokens.push_back(d * 10000 + k);
  doc.masked_prefix = masked;
  return doc;
}

struct PackRun {
  std::vector<Captured> windows;
  PackStats stats;
};

PackRun pack(PackOptions options, const std::vector<TokenizedDoc>& docs) {
  PackRun run;
  Packer packer(options, [&](const Window& w) {
    run.windows.push_back({{w.tokens.begin(), w.tokens.end()},
                           {w.doc_starts.begin(), w.doc_starts.end()},
                           {w.loss_spans.begin(), w.loss_spans.end()}});
  });
  for (const auto& d : docs)
    packer.add(d);
  packer.finish();
  run.stats = packer.stats();
  return run;
}

PackOptions opts(std::int32_t seq_len, AnchorMode mode) {
  PackOptions o;
  o.seq_len = seq_len;
  o.anchor_mode = mode;
  o.anchor_id = kAnchor;
  return o;
}

TEST(Packer, EveryWindowHoldsSeqLenPlusOneTokens) {
  std::vector<TokenizedDoc> docs;
  for (int d = 0; d < 50; ++d)
    docs.push_back(doc_of(d, 3 + (d * 37) % 200));
  for (const auto mode : {AnchorMode::shared, AnchorMode::per_doc, AnchorMode::none}) {
    const PackRun run = pack(opts(63, mode), docs);
    ASSERT_GT(run.windows.size(), 10u);
    EXPECT_EQ(run.stats.windows, run.windows.size());
    for (const auto& w : run.windows) {
      EXPECT_EQ(w.tokens.size(), 64u);
      ASSERT_FALSE(w.starts.empty());
      EXPECT_EQ(w.starts[0], 0);
      EXPECT_TRUE(std::is_sorted(w.starts.begin(), w.starts.end()));
    }
  }
}

TEST(Packer, DocumentsOfTwoTokensOrFewerAreSkipped) {
  const PackRun run = pack(opts(9, AnchorMode::none),
                           {doc_of(1, 0), doc_of(2, 1), doc_of(3, 2), doc_of(4, 3), doc_of(5, 7)});
  EXPECT_EQ(run.stats.documents_in, 5u);
  EXPECT_EQ(run.stats.documents_skipped_short, 3u);
  EXPECT_EQ(run.stats.tokens_skipped_short, 3u);
  ASSERT_EQ(run.windows.size(), 1u);
  EXPECT_EQ(run.windows[0].tokens[0], 40000);
  EXPECT_EQ(run.windows[0].starts, (std::vector<std::int32_t>{0, 3}));
}

TEST(Packer, OverflowContinuesIntoTheNextWindow) {
  // W = 10: doc 1 (6) + the first 4 of doc 2 (8); its last 4 open window 2, then doc 3 (6).
  const PackRun run = pack(opts(9, AnchorMode::none), {doc_of(1, 6), doc_of(2, 8), doc_of(3, 6)});
  ASSERT_EQ(run.windows.size(), 2u);
  EXPECT_EQ(run.windows[0].starts, (std::vector<std::int32_t>{0, 6}));
  EXPECT_EQ(run.windows[0].tokens[6], 20000);
  EXPECT_EQ(run.windows[0].tokens[9], 20003);
  EXPECT_EQ(run.windows[1].tokens[0], 20004);
  EXPECT_EQ(run.windows[1].starts, (std::vector<std::int32_t>{0, 4}));
  EXPECT_EQ(run.stats.tokens_dropped_remainder, 0u);
  EXPECT_EQ(run.stats.tokens_dropped_tail, 0u);
}

TEST(Packer, OverflowDroppedWhenAsked) {
  PackOptions o = opts(9, AnchorMode::none);
  o.continue_remainder = false;
  const PackRun run = pack(o, {doc_of(1, 6), doc_of(2, 8), doc_of(3, 10)});
  ASSERT_EQ(run.windows.size(), 2u);
  EXPECT_EQ(run.windows[1].tokens[0], 30000);  // doc 2's remainder is gone
  EXPECT_EQ(run.stats.tokens_dropped_remainder, 4u);
}

TEST(Packer, ShortRemainderIsDroppedAndCounted) {
  const PackRun run = pack(opts(9, AnchorMode::none), {doc_of(1, 8), doc_of(2, 4), doc_of(3, 10)});
  // doc 2 puts 2 tokens in window 1; its 2-token remainder is too short to be a document.
  EXPECT_EQ(run.stats.tokens_dropped_remainder, 2u);
  ASSERT_GE(run.windows.size(), 2u);
  EXPECT_EQ(run.windows[1].tokens[0], 30000);
}

TEST(Packer, PartialLastWindowIsCounted) {
  const PackRun run = pack(opts(9, AnchorMode::shared), {doc_of(1, 12)});
  ASSERT_EQ(run.windows.size(), 1u);
  EXPECT_EQ(run.stats.tokens_dropped_tail, 3u);  // 9 fitted after the anchor
}

TEST(Packer, SharedAnchorOpensEveryWindowAsDocumentZero) {
  const PackRun run =
      pack(opts(15, AnchorMode::shared), {doc_of(1, 5), doc_of(2, 20), doc_of(3, 9)});
  ASSERT_EQ(run.windows.size(), 2u);
  for (const auto& w : run.windows) {
    EXPECT_EQ(w.tokens[0], kAnchor);
    EXPECT_EQ(w.starts[0], 0);
    EXPECT_EQ(w.starts[1], 1);
    EXPECT_EQ(std::count(w.tokens.begin(), w.tokens.end(), kAnchor), 1);
  }
  EXPECT_EQ(run.windows[0].starts, (std::vector<std::int32_t>{0, 1, 6}));
  // The continued remainder of doc 2 is document 1 of window 2.
  EXPECT_EQ(run.windows[1].tokens[1], 20000 + 10);
}

TEST(Packer, PerDocAnchorStartsEverySegment) {
  const PackRun run =
      pack(opts(15, AnchorMode::per_doc), {doc_of(1, 5), doc_of(2, 20), doc_of(3, 9)});
  ASSERT_GE(run.windows.size(), 2u);
  for (const auto& w : run.windows) {
    for (const std::int32_t s : w.starts)
      EXPECT_EQ(w.tokens[s], kAnchor);
    EXPECT_EQ(std::count(w.tokens.begin(), w.tokens.end(), kAnchor),
              static_cast<long>(w.starts.size()));
  }
  EXPECT_EQ(run.windows[0].starts, (std::vector<std::int32_t>{0, 6}));
  EXPECT_EQ(run.windows[1].tokens[1], 20000 + 9);  // the remainder, behind its own anchor
}

TEST(Packer, NoAnchorModeHasNoAnchorTokens) {
  const PackRun run = pack(opts(15, AnchorMode::none), {doc_of(1, 5), doc_of(2, 20), doc_of(3, 9)});
  for (const auto& w : run.windows)
    EXPECT_EQ(std::count(w.tokens.begin(), w.tokens.end(), kAnchor), 0);
  EXPECT_EQ(run.stats.anchor_tokens, 0u);
}

TEST(Packer, AnchorModesNeedAnAnchorId) {
  PackOptions o = opts(9, AnchorMode::shared);
  o.anchor_id = -1;
  EXPECT_THROW(Packer(o, [](const Window&) {}), Error);
  o.anchor_mode = AnchorMode::none;
  EXPECT_NO_THROW(Packer(o, [](const Window&) {}));
  o.seq_len = 1;
  EXPECT_THROW(Packer(o, [](const Window&) {}), Error);
}

TEST(Packer, TagTokensAreLossMaskedWhereverTheyLand) {
  // Tag of 3 tokens on each document; W = 12 with the shared anchor.
  const PackRun run = pack(opts(11, AnchorMode::shared), {doc_of(1, 7, 3), doc_of(2, 10, 3)});
  ASSERT_GE(run.windows.size(), 1u);
  const auto& w0 = run.windows[0];
  // doc 1 at [1, 8): tag [1, 4); doc 2 at [8, 12): its tag [8, 11).
  EXPECT_EQ(w0.spans, (std::vector<std::pair<std::int32_t, std::int32_t>>{{1, 4}, {8, 11}}));
  if (run.windows.size() > 1) {
    EXPECT_TRUE(run.windows[1].spans.empty());  // a remainder past its tag: no span
  }
}

TEST(Packer, TagCutByTheWindowEdgeContinuesItsMask) {
  const PackRun run = pack(opts(9, AnchorMode::none), {doc_of(1, 8), doc_of(2, 12, 5)});
  ASSERT_EQ(run.windows.size(), 2u);
  EXPECT_EQ(run.windows[0].spans, (std::vector<std::pair<std::int32_t, std::int32_t>>{{8, 10}}));
  EXPECT_EQ(run.windows[1].spans, (std::vector<std::pair<std::int32_t, std::int32_t>>{{0, 3}}));
}

TEST(Packer, InterleavedChunksFollowTheReferenceRules) {
  std::vector<TokenizedDoc> docs;
  std::vector<std::int32_t> lens;
  for (int d = 1; d <= 60; ++d) {
    const std::int32_t len = d % 10 == 0 ? 30 + d : (d % 10 == 1 ? 2100 : 64 + (d * 97) % 1900);
    lens.push_back(len);
    docs.push_back(doc_of(d, len));
  }
  PackOptions o = opts(1 << 15, AnchorMode::none);
  o.interleave_chunks = true;
  o.seed = 7;
  o.continue_remainder = true;
  const PackRun run = pack(o, docs);
  // Gather every segment (doc id, first token offset, length), across windows.
  std::map<int, std::vector<std::pair<int, int>>> parts;
  bool interleaved = false;
  int previous_doc = -1;
  for (const auto& w : run.windows) {
    for (std::size_t k = 0; k < w.starts.size(); ++k) {
      const int begin = w.starts[k];
      const int end = k + 1 < w.starts.size() ? w.starts[k + 1] : static_cast<int>(w.tokens.size());
      const int d = w.tokens[begin] / 10000;
      for (int t = begin; t < end; ++t)
        ASSERT_EQ(w.tokens[t] / 10000, d);  // one doc per segment
      const int first = w.tokens[begin] % 10000;
      if (!parts[d].empty() && parts[d].back().first + parts[d].back().second == first &&
          begin == 0) {
        parts[d].back().second += end - begin;  // a window cut, not a chunk cut
      } else {
        parts[d].push_back({first, end - begin});
      }
      if (previous_doc != -1 && d < previous_doc) interleaved = true;
      previous_doc = d;
    }
  }
  EXPECT_TRUE(interleaved);
  for (int d = 1; d <= 60; ++d) {
    const auto& p = parts[d];
    const int len = lens[d - 1];
    if (p.empty()) continue;  // in the dropped tail
    for (std::size_t k = 1; k < p.size(); ++k)
      EXPECT_EQ(p[k].first, p[k - 1].first + p[k - 1].second) << "doc " << d << " out of order";
    if (len < 64 || len > 2048) {
      EXPECT_EQ(p.size(), 1u) << "doc " << d << " of " << len << " tokens was split";
    } else if (p.back().first + p.back().second == len) {
      EXPECT_TRUE(p.size() == 2 || p.size() == 3) << "doc " << d << ": " << p.size() << " parts";
      for (std::size_t k = 1; k < p.size(); ++k) {
        EXPECT_GE(p[k].first * 10, len * 2) << "doc " << d;
        EXPECT_LE(p[k].first * 10, len * 8) << "doc " << d;
      }
    }
  }
}

TEST(Packer, SameSeedSameWindowsOtherSeedOtherOrder) {
  std::vector<TokenizedDoc> docs;
  for (int d = 1; d <= 40; ++d)
    docs.push_back(doc_of(d, 64 + d * 13));
  PackOptions o = opts(255, AnchorMode::shared);
  o.interleave_chunks = true;
  o.seed = 1;
  const PackRun a = pack(o, docs), b = pack(o, docs);
  ASSERT_EQ(a.windows.size(), b.windows.size());
  for (std::size_t i = 0; i < a.windows.size(); ++i) {
    EXPECT_EQ(a.windows[i].tokens, b.windows[i].tokens);
    EXPECT_EQ(a.windows[i].starts, b.windows[i].starts);
  }
  o.seed = 2;
  const PackRun c = pack(o, docs);
  EXPECT_NE(a.windows[0].tokens, c.windows[0].tokens);

  EXPECT_EQ(window_order(100, true, 5), window_order(100, true, 5));
  EXPECT_NE(window_order(100, true, 5), window_order(100, true, 6));
  auto order = window_order(100, true, 5);
  std::sort(order.begin(), order.end());
  std::vector<std::uint64_t> identity(100);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(order, identity);
  EXPECT_EQ(window_order(100, false, 5), identity);
}

TEST(Packer, ModeNamesRoundTrip) {
  for (const auto m : {AnchorMode::shared, AnchorMode::per_doc, AnchorMode::none})
    EXPECT_EQ(parse_anchor_mode(to_string(m)), m);
  EXPECT_FALSE(parse_anchor_mode("flex"));
}

}  // namespace
}  // namespace anchorctx::data
