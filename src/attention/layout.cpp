#include "anchorctx/attention/layout.h"

#include <algorithm>

#include "anchorctx/core/error.h"

namespace anchorctx::attention {

AttentionLayout AttentionLayout::from_arrays(std::span<const std::int32_t> cu_seqlens,
                                             std::span<const std::int32_t> cu_docs,
                                             std::span<const std::int32_t> doc_starts,
                                             std::span<const std::int32_t> anchor_lens) {
  require(!cu_seqlens.empty(), "layout: cu_seqlens is empty (it needs B+1 entries)");
  const std::size_t batch = cu_seqlens.size() - 1;
  require(cu_docs.size() == batch + 1, "layout: cu_docs has {} entries, expected B+1 = {}",
          cu_docs.size(), batch + 1);
  require(anchor_lens.empty() || anchor_lens.size() == batch,
          "layout: anchor_lens has {} entries, expected B = {}", anchor_lens.size(), batch);
  require(cu_seqlens[0] == 0, "layout: cu_seqlens[0] is {}, must be 0", cu_seqlens[0]);
  require(cu_docs[0] == 0, "layout: cu_docs[0] is {}, must be 0", cu_docs[0]);
  for (std::size_t b = 0; b < batch; ++b) {
    require(cu_seqlens[b + 1] >= cu_seqlens[b],
            "layout: cu_seqlens not increasing at index {} ({} after {})", b + 1, cu_seqlens[b + 1],
            cu_seqlens[b]);
    require(cu_docs[b + 1] >= cu_docs[b],
            "layout: cu_docs not increasing at index {} ({} after {})", b + 1, cu_docs[b + 1],
            cu_docs[b]);
  }
  require(static_cast<std::size_t>(cu_docs[batch]) == doc_starts.size(),
          "layout: cu_docs[B] is {} but doc_starts has {} entries", cu_docs[batch],
          doc_starts.size());

  AttentionLayout layout;
  layout.cu_seqlens_.assign(cu_seqlens.begin(), cu_seqlens.end());
  layout.cu_docs_.reserve(batch + 1);
  layout.cu_docs_.push_back(0);
  layout.doc_starts_.reserve(doc_starts.size() + batch);
  layout.anchor_lens_.assign(batch, 0);
  for (std::size_t b = 0; b < batch; ++b) {
    const std::int32_t len = cu_seqlens[b + 1] - cu_seqlens[b];
    const std::int32_t anchor = anchor_lens.empty() ? 0 : anchor_lens[b];
    require(anchor >= 0 && anchor <= len,
            "layout: anchor_lens[{}] is {}, outside the sequence length [0, {}]", b, anchor, len);
    layout.anchor_lens_[b] = anchor;
    std::int32_t previous = -1;
    for (std::int32_t i = cu_docs[b]; i < cu_docs[b + 1]; ++i) {
      const std::int32_t start = doc_starts[i];
      require(start >= 0 && start < len,
              "layout: doc_starts[{}] = {} is outside sequence {} of length {}", i, start, b, len);
      require(start > previous, "layout: doc_starts[{}] = {} is not above the previous start {}", i,
              start, previous);
      if (previous == -1 && start != 0) layout.doc_starts_.push_back(0);  // implicit first doc
      layout.doc_starts_.push_back(start);
      previous = start;
    }
    if (previous == -1 && len > 0) layout.doc_starts_.push_back(0);  // one document
    layout.cu_docs_.push_back(static_cast<std::int32_t>(layout.doc_starts_.size()));
  }
  layout.cu_seqlens_q_ = layout.cu_seqlens_;
  return layout;
}

AttentionLayout AttentionLayout::from_arrays(std::span<const std::int32_t> cu_seqlens_q,
                                             std::span<const std::int32_t> cu_seqlens,
                                             std::span<const std::int32_t> cu_docs,
                                             std::span<const std::int32_t> doc_starts,
                                             std::span<const std::int32_t> anchor_lens) {
  AttentionLayout layout = from_arrays(cu_seqlens, cu_docs, doc_starts, anchor_lens);
  require(cu_seqlens_q.size() == cu_seqlens.size(),
          "layout: cu_seqlens_q has {} entries, expected B+1 = {}", cu_seqlens_q.size(),
          cu_seqlens.size());
  require(cu_seqlens_q[0] == 0, "layout: cu_seqlens_q[0] is {}, must be 0", cu_seqlens_q[0]);
  for (std::size_t b = 0; b + 1 < cu_seqlens.size(); ++b) {
    const std::int64_t q_len = std::int64_t{cu_seqlens_q[b + 1]} - cu_seqlens_q[b];
    require(q_len >= 0, "layout: cu_seqlens_q not increasing at index {} ({} after {})", b + 1,
            cu_seqlens_q[b + 1], cu_seqlens_q[b]);
    require(q_len <= layout.seq_len(static_cast<int>(b)),
            "layout: cu_seqlens_q gives sequence {} {} queries but it has only {} keys (queries "
            "are its last keys)",
            b, q_len, layout.seq_len(static_cast<int>(b)));
  }
  layout.cu_seqlens_q_.assign(cu_seqlens_q.begin(), cu_seqlens_q.end());
  return layout;
}

AttentionLayout AttentionLayout::from_document_lengths(
    const std::vector<std::vector<std::int32_t>>& doc_lengths, std::int32_t anchor_len) {
  std::vector<std::int32_t> cu_seqlens{0}, cu_docs{0}, starts, anchors;
  for (std::size_t b = 0; b < doc_lengths.size(); ++b) {
    std::int64_t offset = 0;
    for (std::size_t d = 0; d < doc_lengths[b].size(); ++d) {
      const std::int32_t len = doc_lengths[b][d];
      require(len > 0, "layout: document {} of sequence {} has length {}, must be positive", d, b,
              len);
      starts.push_back(static_cast<std::int32_t>(offset));
      offset += len;
      require(offset <= INT32_MAX, "layout: sequence {} has more than 2^31-1 tokens", b);
    }
    const std::int64_t end = cu_seqlens.back() + offset;
    require(end <= INT32_MAX, "layout: the batch has more than 2^31-1 tokens");
    cu_seqlens.push_back(static_cast<std::int32_t>(end));
    cu_docs.push_back(static_cast<std::int32_t>(starts.size()));
    anchors.push_back(static_cast<std::int32_t>(std::min<std::int64_t>(anchor_len, offset)));
  }
  return from_arrays(cu_seqlens, cu_docs, starts, anchors);
}

std::span<const std::int32_t> AttentionLayout::doc_starts(int b) const {
  return {doc_starts_.data() + cu_docs_[b], doc_starts_.data() + cu_docs_[b + 1]};
}

std::int32_t AttentionLayout::doc_start_of(int b, std::int32_t pos) const {
  const auto starts = doc_starts(b);
  // The last start <= pos; starts[0] == 0 so it always exists.
  return *(std::upper_bound(starts.begin(), starts.end(), pos) - 1);
}

std::int32_t AttentionLayout::doc_end_of(int b, std::int32_t pos) const {
  const auto starts = doc_starts(b);
  const auto next = std::upper_bound(starts.begin(), starts.end(), pos);
  return next == starts.end() ? seq_len(b) : *next;
}

KeySpans AttentionLayout::visible_keys(const Mask& mask, int b, std::int32_t q) const {
  const std::int32_t pos = q + q_offset(b);
  return attention::visible_keys(
      mask, {pos, doc_start_of(b, pos), doc_end_of(b, pos), seq_len(b), anchor_lens_[b]});
}

std::int64_t AttentionLayout::visible_pairs(const Mask& mask) const {
  std::int64_t total = 0;
  for (int b = 0; b < num_sequences(); ++b) {
    // Document by document, so no row pays for a search.
    const auto starts = doc_starts(b);
    const std::int32_t len = seq_len(b), first = q_offset(b);
    for (std::size_t d = 0; d < starts.size(); ++d) {
      const std::int32_t end = d + 1 < starts.size() ? starts[d + 1] : len;
      for (std::int32_t pos = std::max(starts[d], first); pos < end; ++pos)
        total += attention::visible_keys(mask, {pos, starts[d], end, len, anchor_lens_[b]}).count();
    }
  }
  return total;
}

}  // namespace anchorctx::attention
