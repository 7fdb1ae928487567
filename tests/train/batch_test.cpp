// Batches from raw windows: shifted targets, loss-mask spans, and the document-boundary rule of
// `mask_doc_boundaries` in each anchor mode.
#include "anchorctx/train/batch.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace anchorctx::train {
namespace {

using Ids = std::vector<std::int32_t>;
using Offsets = std::vector<std::uint32_t>;

Ids targets_of(const Ids& tokens, const Offsets& starts, data::AnchorMode mode, bool mask_bounds,
               const Offsets& spans = {}) {
  const RawWindow w{tokens, starts, spans};
  BatchOptions options;
  options.mask = attention::MaskKind::anchor;
  options.mask_doc_boundaries = mask_bounds;
  return make_batch(std::span<const RawWindow>(&w, 1), mode, options).targets;
}

// Window tokens: 100 is the anchor; documents are 1x, 2x, 3x.
TEST(Batch, TargetsAreTheNextTokens) {
  const Ids tokens{100, 11, 12, 13, 21, 22, 31, 32, 33};
  EXPECT_EQ(targets_of(tokens, {0, 1, 4, 6}, data::AnchorMode::shared, false),
            (Ids{11, 12, 13, 21, 22, 31, 32, 33}));
  // A loss-mask span [4, 6) (a domain tag): tokens 4 and 5 are never targets.
  EXPECT_EQ(targets_of(tokens, {0, 1, 4, 6}, data::AnchorMode::shared, false, {4, 6}),
            (Ids{11, 12, 13, -1, -1, 31, 32, 33}));
}

TEST(Batch, SharedAnchorKeepsTheFirstDocumentsFirstToken) {
  // Document 1's first token (11) is predicted from the anchor alone: kept. Documents 2 and 3
  // start where the previous document's last token predicts them: dropped.
  const Ids tokens{100, 11, 12, 13, 21, 22, 31, 32, 33};
  EXPECT_EQ(targets_of(tokens, {0, 1, 4, 6}, data::AnchorMode::shared, true),
            (Ids{11, 12, 13, -1, 22, -1, 32, 33}));
  // A document starting at the label-only last token is a boundary target too.
  EXPECT_EQ(targets_of(tokens, {0, 1, 4, 8}, data::AnchorMode::shared, true),
            (Ids{11, 12, 13, -1, 22, 31, 32, -1}));
}

TEST(Batch, PerDocumentAnchorsKeepEachDocumentsFirstTextToken) {
  // Each document starts with its own anchor (100): the anchor, predicted from the previous
  // document, is dropped; the document's first text token, predicted by its anchor, is kept.
  const Ids tokens{100, 11, 12, 100, 21, 22, 100, 31, 32};
  EXPECT_EQ(targets_of(tokens, {0, 3, 6}, data::AnchorMode::per_doc, true),
            (Ids{11, 12, -1, 21, 22, -1, 31, 32}));
}

TEST(Batch, WithoutAnchorsEveryLaterDocumentStartIsDropped) {
  const Ids tokens{11, 12, 13, 21, 22, 23, 31, 32, 33};
  EXPECT_EQ(targets_of(tokens, {0, 3, 6}, data::AnchorMode::none, true),
            (Ids{12, 13, -1, 22, 23, -1, 32, 33}));
  EXPECT_EQ(targets_of(tokens, {0, 3, 6}, data::AnchorMode::none, false),
            (Ids{12, 13, 21, 22, 23, 31, 32, 33}));
}

TEST(Batch, TargetCountCountsKeptTargets) {
  const Ids tokens{100, 11, 12, 13, 21, 22, 31, 32, 33};
  const Offsets starts{0, 1, 4, 6};
  const RawWindow w{tokens, starts, {}};
  BatchOptions options;
  options.mask_doc_boundaries = true;
  const Batch b = make_batch(std::span<const RawWindow>(&w, 1), data::AnchorMode::shared, options);
  EXPECT_EQ(b.target_count, 6);
}

}  // namespace
}  // namespace anchorctx::train
