#include "anchorctx/train/batch.h"

#include <algorithm>

#include "anchorctx/core/error.h"

namespace anchorctx::train {

Batch make_batch(std::span<const RawWindow> windows, data::AnchorMode anchor_mode,
                 const BatchOptions& options) {
  require(!windows.empty(), "batch: no windows");
  Batch b;
  b.cu_seqlens.push_back(0);
  b.cu_docs.push_back(0);
  for (const RawWindow& w : windows) {
    const std::int32_t len = static_cast<std::int32_t>(w.tokens.size()) - 1;  // inputs
    require(len >= 1, "batch: a window needs at least 2 tokens");
    // Inputs and shifted targets.
    b.input_ids.insert(b.input_ids.end(), w.tokens.begin(), w.tokens.end() - 1);
    std::vector<std::int32_t> targets(w.tokens.begin() + 1, w.tokens.end());
    for (std::size_t s = 0; s + 1 < w.loss_spans.size(); s += 2)
      for (std::uint32_t t = std::max<std::uint32_t>(w.loss_spans[s], 1);
           t < w.loss_spans[s + 1] && t <= static_cast<std::uint32_t>(len); ++t)
        targets[t - 1] = -1;  // token t is never a target: input t - 1 gets no loss
    // Document starts of the inputs (a document starting at the label-only last token is not
    // an input document, but its first token is a boundary target).
    std::vector<std::int32_t> starts;
    for (const std::uint32_t s : w.doc_starts)
      if (s < static_cast<std::uint32_t>(len)) starts.push_back(static_cast<std::int32_t>(s));
    if (starts.empty() || starts.front() != 0) starts.insert(starts.begin(), 0);
    // The anchor tokens: the window's first in the shared mode, each document's first in the
    // per-document mode.
    const std::vector<std::int32_t> anchors =
        anchor_mode == data::AnchorMode::shared    ? std::vector{0}
        : anchor_mode == data::AnchorMode::per_doc ? starts
                                                   : std::vector<std::int32_t>{};
    // Document boundaries: no loss where input s - 1 belongs to the previous document and its
    // target s starts the next one; an anchor predicting s keeps it.
    if (options.mask_doc_boundaries) {
      for (const std::uint32_t s : w.doc_starts) {
        if (s < 1 || s > static_cast<std::uint32_t>(len)) continue;
        const auto input = static_cast<std::int32_t>(s - 1);
        if (std::find(anchors.begin(), anchors.end(), input) == anchors.end()) targets[s - 1] = -1;
      }
    }
    for (const std::int32_t t : targets)
      b.target_count += t >= 0;
    b.targets.insert(b.targets.end(), targets.begin(), targets.end());
    const std::vector<std::int32_t> pos =
        rope::position_ids(options.positions, starts, len, anchors);
    b.position_ids.insert(b.position_ids.end(), pos.begin(), pos.end());
    b.doc_starts.insert(b.doc_starts.end(), starts.begin(), starts.end());
    b.cu_docs.push_back(static_cast<std::int32_t>(b.doc_starts.size()));
    b.cu_seqlens.push_back(b.cu_seqlens.back() + len);
    // Shared mode: the window's first token is the anchor every document sees.
    b.anchor_lens.push_back(anchor_mode == data::AnchorMode::shared ? 1 : 0);
  }
  const attention::AttentionLayout layout =
      attention::AttentionLayout::from_arrays(b.cu_seqlens, b.cu_docs, b.doc_starts, b.anchor_lens);
  b.plan = attention::BlockPlan::build(layout, options.mask);
  return b;
}

Batch make_batch(const data::Dataset& dataset, std::span<const std::uint64_t> windows,
                 const BatchOptions& options) {
  require(!windows.empty(), "batch: no windows");
  std::vector<std::vector<std::int32_t>> tokens;
  std::vector<RawWindow> raw;
  tokens.reserve(windows.size());
  for (const std::uint64_t i : windows)
    tokens.push_back(dataset.tokens(i));
  for (std::size_t k = 0; k < windows.size(); ++k)
    raw.push_back({tokens[k], dataset.doc_starts(windows[k]), dataset.loss_spans(windows[k])});
  return make_batch(raw, dataset.anchor_mode(), options);
}

}  // namespace anchorctx::train
