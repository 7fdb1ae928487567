// Packer fed documents in parts (begin_document / add_tokens / end_document): the windows and
// the counts are exactly those of the packer before streaming, which took every document whole.
// That packer's rules are kept below, as they were, as the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "anchorctx/core/random.h"
#include "anchorctx/data/packer.h"

namespace anchorctx::data {
namespace {

constexpr std::int32_t kAnchor = 7777;

struct Captured {
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> starts;
  std::vector<std::pair<std::int32_t, std::int32_t>> spans;
  bool operator==(const Captured&) const = default;
};

struct Counts {
  std::uint64_t documents_in = 0, documents_packed = 0, documents_skipped_short = 0;
  std::uint64_t tokens_in = 0, tokens_skipped_short = 0, tokens_dropped_remainder = 0;
  std::uint64_t tokens_dropped_tail = 0, segments = 0, anchor_tokens = 0, windows = 0;
  bool operator==(const Counts&) const = default;
};

Counts counts_of(const PackStats& s) {
  return {s.documents_in,
          s.documents_packed,
          s.documents_skipped_short,
          s.tokens_in,
          s.tokens_skipped_short,
          s.tokens_dropped_remainder,
          s.tokens_dropped_tail,
          s.segments,
          s.anchor_tokens,
          s.windows};
}

struct Packed {
  std::vector<Captured> windows;
  Counts counts;
};

// The packer as it was before documents could arrive in parts (whole documents, no
// interleaving): the reference the streaming packer must reproduce bit for bit.
class ReferencePacker {
 public:
  explicit ReferencePacker(const PackOptions& o) : o_(o) { start_window(); }

  void add(const TokenizedDoc& doc) {
    ++c_.documents_in;
    const std::size_t n = doc.tokens.size();
    c_.tokens_in += n;
    const std::size_t content = n - std::min<std::size_t>(n, doc.masked_prefix);
    if (content < static_cast<std::size_t>(o_.min_doc_tokens)) {
      ++c_.documents_skipped_short;
      c_.tokens_skipped_short += n;
      return;
    }
    ++c_.documents_packed;
    place(doc.tokens, doc.masked_prefix);
  }

  Packed finish() {
    if (has_content_) c_.tokens_dropped_tail += cur_.tokens.size() - anchors();
    return {out_, c_};
  }

 private:
  std::size_t w() const { return static_cast<std::size_t>(o_.seq_len) + 1; }
  // The current window's anchors: the written windows' are what anchor_tokens counts.
  std::uint64_t anchors() const {
    if (o_.anchor_mode == AnchorMode::shared) return 1;
    if (o_.anchor_mode == AnchorMode::per_doc) return cur_.starts.size();
    return 0;
  }
  void start_window() {
    cur_ = Captured{};
    has_content_ = false;
    if (o_.anchor_mode == AnchorMode::shared) {
      cur_.starts.push_back(0);
      cur_.tokens.push_back(o_.anchor_id);
    }
  }
  void emit() {
    ++c_.windows;
    c_.anchor_tokens += anchors();
    out_.push_back(cur_);
    start_window();
  }
  void place(const std::vector<std::int32_t>& tokens, std::int32_t masked_prefix) {
    std::size_t pos = 0;
    const std::size_t n = tokens.size();
    while (pos < n) {
      std::size_t space = w() - cur_.tokens.size();
      cur_.starts.push_back(static_cast<std::int32_t>(cur_.tokens.size()));
      if (o_.anchor_mode == AnchorMode::per_doc) {
        cur_.tokens.push_back(o_.anchor_id);
        if (--space == 0) {
          has_content_ = true;
          emit();
          continue;
        }
      }
      ++c_.segments;
      has_content_ = true;
      const std::size_t take = std::min(space, n - pos);
      const auto at = static_cast<std::int32_t>(cur_.tokens.size());
      cur_.tokens.insert(cur_.tokens.end(), tokens.begin() + static_cast<std::ptrdiff_t>(pos),
                         tokens.begin() + static_cast<std::ptrdiff_t>(pos + take));
      const std::size_t mask_end =
          std::min<std::size_t>(static_cast<std::size_t>(masked_prefix), pos + take);
      if (mask_end > pos)
        cur_.spans.emplace_back(at, at + static_cast<std::int32_t>(mask_end - pos));
      pos += take;
      if (cur_.tokens.size() == w()) emit();
      if (pos < n) {
        const std::size_t rest = n - pos;
        if (!o_.continue_remainder || rest < static_cast<std::size_t>(o_.min_doc_tokens)) {
          c_.tokens_dropped_remainder += rest;
          return;
        }
      }
    }
  }

  PackOptions o_;
  Counts c_;
  Captured cur_;
  bool has_content_ = false;
  std::vector<Captured> out_;
};

Packer make_packer(const PackOptions& o, Packed& out) {
  return Packer(o, [&out](const Window& w) {
    out.windows.push_back({{w.tokens.begin(), w.tokens.end()},
                           {w.doc_starts.begin(), w.doc_starts.end()},
                           {w.loss_spans.begin(), w.loss_spans.end()}});
  });
}

// Document lengths around every edge a window has: empty, 1, 2, 3 tokens, a window's content
// exactly (with and without the shared anchor's place), one more and one less, and several
// windows; mixed with random ones. Token k of document d is d * 100000 + k.
std::vector<TokenizedDoc> corpus(std::uint64_t seed, std::int32_t seq_len) {
  std::uint64_t state = seed;
  const auto below = [&](std::uint64_t n) { return core::bits_below(core::splitmix64(state), n); };
  const std::int32_t w = seq_len + 1;
  const std::vector<std::int32_t> edges = {0,     1,     2,     3,         4,         w - 2,
                                           w - 1, w,     w + 1, 2 * w - 1, 2 * w,     3 * w + 5,
                                           7 * w, w / 2, 1,     2,         5 * w - 3, 11 * w + 1};
  std::vector<TokenizedDoc> docs;
  for (std::size_t d = 0; d < 60; ++d) {
    const std::int32_t len = d < edges.size() ? edges[d] : static_cast<std::int32_t>(below(4 * w));
    TokenizedDoc doc;
    for (std::int32_t k = 0; k < len; ++k)
      doc.tokens.push_back(static_cast<std::int32_t>(d) * 100000 + k);
    // A masked prefix (a domain tag) on a third of them, sometimes longer than a window.
    if (below(3) == 0) doc.masked_prefix = static_cast<std::int32_t>(below(w + 3));
    docs.push_back(std::move(doc));
  }
  return docs;
}

Packed reference(const PackOptions& o, const std::vector<TokenizedDoc>& docs) {
  ReferencePacker ref(o);
  for (const auto& d : docs)
    ref.add(d);
  return ref.finish();
}

// Each document in random parts: empty ones, single tokens, and long runs.
Packed in_parts(const PackOptions& o, const std::vector<TokenizedDoc>& docs, std::uint64_t seed) {
  Packed out;
  Packer packer = make_packer(o, out);
  std::uint64_t state = seed;
  const auto below = [&](std::uint64_t n) { return core::bits_below(core::splitmix64(state), n); };
  for (const auto& d : docs) {
    packer.begin_document(d.masked_prefix);
    std::size_t pos = 0;
    while (pos < d.tokens.size()) {
      const std::size_t kind = below(4);
      std::size_t len = kind == 0 ? 0 : kind == 1 ? 1 : below(kind == 2 ? 5 : 3 * o.seq_len);
      len = std::min(len, d.tokens.size() - pos);
      packer.add_tokens(std::span<const std::int32_t>(d.tokens).subspan(pos, len));
      pos += len;
    }
    if (below(2) == 0) packer.add_tokens({});
    packer.end_document();
  }
  packer.finish();
  out.counts = counts_of(packer.stats());
  return out;
}

Packed whole(const PackOptions& o, const std::vector<TokenizedDoc>& docs) {
  Packed out;
  Packer packer = make_packer(o, out);
  for (const auto& d : docs)
    packer.add(d);
  packer.finish();
  out.counts = counts_of(packer.stats());
  return out;
}

TEST(PackerStream, DocumentsInPartsGiveThePreviousPackersWindows) {
  int cases = 0;
  for (const AnchorMode mode : {AnchorMode::shared, AnchorMode::per_doc, AnchorMode::none}) {
    for (const bool cont : {true, false}) {
      for (const std::int32_t seq_len : {2, 3, 7, 16, 61}) {
        for (const std::int32_t min_doc : {3, 1, 0}) {
          PackOptions o;
          o.seq_len = seq_len;
          o.anchor_mode = mode;
          o.anchor_id = kAnchor;
          o.continue_remainder = cont;
          o.min_doc_tokens = min_doc;
          const std::uint64_t seed = 1000u * static_cast<std::uint64_t>(seq_len) + cases;
          const auto docs = corpus(seed, seq_len);
          const Packed want = reference(o, docs);
          ASSERT_GT(want.windows.size(), 0u);
          const Packed got_whole = whole(o, docs);
          EXPECT_EQ(got_whole.counts, want.counts) << to_string(mode) << " seq_len " << seq_len;
          ASSERT_EQ(got_whole.windows, want.windows) << to_string(mode) << " seq_len " << seq_len;
          for (std::uint64_t split = 0; split < 4; ++split) {
            const Packed got = in_parts(o, docs, seed * 31 + split);
            EXPECT_EQ(got.counts, want.counts)
                << to_string(mode) << " seq_len " << seq_len << " cont " << cont << " min_doc "
                << min_doc << " split " << split;
            ASSERT_EQ(got.windows, want.windows)
                << to_string(mode) << " seq_len " << seq_len << " cont " << cont << " min_doc "
                << min_doc << " split " << split;
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 90);
}

TEST(PackerStream, AHugeDocumentIsHeldOnlyAsLongAsItsPart) {
  // 2,000 parts of 1,000 tokens: the packer holds a part and a few tokens, never the document
  // (what it holds is the window and the held-back tail; checked through its window output,
  // which starts long before the document ends).
  PackOptions o;
  o.seq_len = 4095;
  o.anchor_id = kAnchor;
  std::size_t windows_before_end = 0;
  Packer packer(o, [&](const Window&) { ++windows_before_end; });
  packer.begin_document(0);
  std::vector<std::int32_t> part(1000);
  for (int p = 0; p < 2000; ++p) {
    std::iota(part.begin(), part.end(), p * 1000);
    packer.add_tokens(part);
    if (p == 100) {
      EXPECT_GE(windows_before_end, 24u);  // 101,000 tokens: 24 full windows
    }
  }
  packer.end_document();
  packer.finish();
  EXPECT_EQ(packer.stats().windows, 2'000'000u / 4095u);
  EXPECT_EQ(packer.stats().documents_packed, 1u);
}

TEST(PackerStream, MisuseIsAnError) {
  PackOptions o;
  o.seq_len = 8;
  o.anchor_id = kAnchor;
  Packer packer(o, [](const Window&) {});
  EXPECT_ANY_THROW(packer.add_tokens(std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_ANY_THROW(packer.end_document());
  packer.begin_document(0);
  EXPECT_ANY_THROW(packer.begin_document(0));
  EXPECT_ANY_THROW(packer.add(TokenizedDoc{{1, 2, 3}, 0}));
  EXPECT_ANY_THROW(packer.finish());
  packer.end_document();
  o.interleave_chunks = true;
  Packer interleaving(o, [](const Window&) {});
  EXPECT_ANY_THROW(interleaving.begin_document(0));
}

}  // namespace
}  // namespace anchorctx::data
