// The `ppl` task: loss and perplexity of a text by token position and by context length.
//
// Samples are windows of tokens (from documents concatenated into one stream, or a packed
// dataset's first windows: held-out loss only when that text was not trained on). The same samples
// are cut at every requested length (the first length + 1 tokens), so the lengths compare the same
// text. Each cut is scored as training scores a window (train::make_batch: shifted targets,
// loss-mask spans, optional document-boundary masking, the mask and position policy of the
// options) through the batched prefill.
//
// Position buckets (of the input token's index in the window) double: [0, 128), [128, 256),
// [256, 512), ... up to the length: the scale on which long-context gains show, with few buckets
// and enough tokens in the early ones to be stable.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "anchorctx/attention/mask.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/packer.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/prefill.h"
#include "anchorctx/rope/positions.h"

namespace anchorctx::eval {

struct PplSample {
  std::vector<std::int32_t> tokens;       // at least max length + 1
  std::vector<std::uint32_t> doc_starts;  // window-local, sorted, first 0
  std::vector<std::uint32_t> loss_spans;  // begin0, end0, ... (tokens never targets)
};

// A document of a text source as ppl scores it: the token `anchorctx pack` opens a per_doc
// document with (data::default_anchor_id: the tokenizer's bos, else its eos), then `ids`; a
// tokenizer with neither gives `ids` alone, the documents then running into each other.
std::vector<std::int32_t> ppl_document(const data::Tokenizer& tokenizer,
                                       std::span<const std::int32_t> ids);

// `documents` (token ids, each opened by ppl_document's token) concatenated into one
// stream and cut into up to `count` consecutive samples of `length` + 1 tokens; document starts
// recorded. Fewer when the text runs out (none when it holds under length + 1 tokens).
std::vector<PplSample> samples_from_documents(
    const std::vector<std::vector<std::int32_t>>& documents, std::int64_t length,
    std::int64_t count);

// The first `count` logical windows of a packed dataset (length <= its seq_len, else an error):
// the windows training reads first, so not held out when the model trained on this dataset.
// Fewer when the dataset holds fewer.
std::vector<PplSample> samples_from_dataset(const data::Dataset& dataset, std::int64_t length,
                                            std::int64_t count);

struct PplOptions {
  std::vector<std::int64_t> lengths;  // context lengths, each <= every sample's length
  attention::MaskKind mask = attention::MaskKind::causal;
  rope::PositionPolicy positions = rope::PositionPolicy::global;
  data::AnchorMode anchor_mode = data::AnchorMode::none;  // shared: token 0 is the anchor
  bool mask_doc_boundaries = false;
};

// [begin, end) buckets of input positions for a window of `length` inputs (see above).
std::vector<std::pair<std::int64_t, std::int64_t>> position_buckets(std::int64_t length);

struct LossTally {
  double loss = 0.0;  // summed -log p
  std::int64_t tokens = 0;
  double mean() const;  // NaN without tokens
  double ppl() const;   // exp(mean)
};

struct PplBucket {
  std::int64_t begin = 0, end = 0;
  LossTally tally;
};

struct PplResult {
  std::int64_t length = 0;
  LossTally total;
  std::vector<double> sample_mean;  // mean loss per sample (the spread across samples)
  std::vector<PplBucket> buckets;
};

// One result per length. `on_sample` (optional) is called after each scored sample cut.
std::vector<PplResult> evaluate_ppl(Prefill& prefill, const std::vector<PplSample>& samples,
                                    const PplOptions& options,
                                    const std::function<void()>& on_sample = {});

}  // namespace anchorctx::eval
