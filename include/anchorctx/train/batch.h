// From packed dataset windows to a training batch: inputs, shifted targets with the loss mask,
// position ids by policy, and the attention plan of the mask.
//
// A window holds seq_len + 1 tokens: inputs are tokens [0, seq_len), the target of input t is
// token t + 1. No loss where token t + 1 lies in a loss-mask span (domain tags), nor, with
// `mask_doc_boundaries`, where it starts a document and input t belongs to the previous one
// (the prediction across two unrelated documents). A document's first token predicted by an
// anchor keeps its loss: the anchor is the only context it has under the anchor and intra-doc
// masks, as at the start of any document (document 1 after the shared anchor; in the per_doc
// mode each document's first text token after its own anchor, while that anchor token, the
// document start, is predicted from the previous document and has none). Several windows are
// packed back to back (varlen, no padding).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/rope/positions.h"

namespace anchorctx::train {

struct BatchOptions {
  attention::MaskKind mask = attention::MaskKind::anchor;
  rope::PositionPolicy positions = rope::PositionPolicy::anchor;
  bool mask_doc_boundaries = false;
};

// One batch, owning its arrays; batch() views them for the model.
struct Batch {
  std::vector<std::int32_t> input_ids, targets, position_ids;
  std::vector<std::int32_t> cu_seqlens, cu_docs, doc_starts, anchor_lens;
  attention::BlockPlan plan;
  std::int64_t target_count = 0;  // positions with a target
  model::TrainBatch view() const { return {input_ids, targets, position_ids, &plan}; }
};

// The batch of `windows` (logical window indices of `dataset`). The anchor (anchor_len 1) is
// the window's first token in the dataset's shared anchor mode; per-document anchors need no
// anchor in the layout (each document's own first token plays it under the intra-document
// visibility). Throws anchorctx::Error on an empty list.
Batch make_batch(const data::Dataset& dataset, std::span<const std::uint64_t> windows,
                 const BatchOptions& options);

// The same from raw windows (tokens of length seq_len + 1 each, document starts, loss spans as
// the dataset stores them), for tests and for callers without a dataset folder.
struct RawWindow {
  std::span<const std::int32_t> tokens;
  std::span<const std::uint32_t> doc_starts;
  std::span<const std::uint32_t> loss_spans;  // begin0, end0, begin1, end1, ...
};
Batch make_batch(std::span<const RawWindow> windows, data::AnchorMode anchor_mode,
                 const BatchOptions& options);

}  // namespace anchorctx::train
