// AttentionLayout: where the sequences, documents and anchors of a packed batch are.
//
// A batch packs B sequences back to back into T tokens (FlashAttention's varlen layout, no
// padding): sequence b holds tokens [cu_seqlens[b], cu_seqlens[b+1]). Each sequence is split
// into documents by sorted start offsets local to the sequence; the first document starts at 0
// (a list that does not begin at 0 gets 0 added). Its `anchor_len` leading tokens are visible to
// every later token of the sequence under the anchor mask (0: none).
//
// Queries may be fewer than keys (cu_seqlens_q beside cu_seqlens): sequence b then has
// q_len(b) <= seq_len(b) queries, the LAST ones of its keys (flash_attn_varlen_func's
// alignment), which is what prefill with a cache, chunked prefill and one-token decode need.
// Documents and anchors are always in key positions. Without cu_seqlens_q, queries = keys.
//
// The layout is validated once, when built; everything downstream trusts it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

class AttentionLayout {
 public:
  // From the raw arrays of the C API:
  //   cu_seqlens  [B+1]  token offsets of the sequences, cu_seqlens[0] == 0, non-decreasing;
  //   cu_docs     [B+1]  offsets into doc_starts of each sequence's list (may be empty: 1 doc);
  //   doc_starts  [cu_docs[B]]  per-sequence document starts, strictly increasing, in [0, len);
  //   anchor_lens [B]    leading anchor tokens per sequence, in [0, len]; empty span: all 0.
  // Throws anchorctx::Error naming the array and index of the first inconsistency.
  static AttentionLayout from_arrays(std::span<const std::int32_t> cu_seqlens,
                                     std::span<const std::int32_t> cu_docs,
                                     std::span<const std::int32_t> doc_starts,
                                     std::span<const std::int32_t> anchor_lens);

  // The same with a separate query layout: cu_seqlens_q [B+1], cu_seqlens_q[0] == 0,
  // non-decreasing, each sequence holding at most as many queries as keys.
  static AttentionLayout from_arrays(std::span<const std::int32_t> cu_seqlens_q,
                                     std::span<const std::int32_t> cu_seqlens,
                                     std::span<const std::int32_t> cu_docs,
                                     std::span<const std::int32_t> doc_starts,
                                     std::span<const std::int32_t> anchor_lens);

  // One sequence per entry of `doc_lengths`, its documents of the given lengths (each > 0).
  static AttentionLayout from_document_lengths(
      const std::vector<std::vector<std::int32_t>>& doc_lengths, std::int32_t anchor_len);

  int num_sequences() const { return static_cast<int>(anchor_lens_.size()); }
  // Keys (and, without a separate query layout, queries).
  std::int64_t total_tokens() const { return cu_seqlens_.back(); }
  std::int32_t seq_begin(int b) const { return cu_seqlens_[b]; }
  std::int32_t seq_len(int b) const { return cu_seqlens_[b + 1] - cu_seqlens_[b]; }
  // Queries: sequence b's are rows [q_begin(b), q_begin(b) + q_len(b)) of q, out and lse;
  // query i of it stands at key position i + q_offset(b).
  std::int64_t total_q_tokens() const { return cu_seqlens_q_.back(); }
  std::int32_t q_begin(int b) const { return cu_seqlens_q_[b]; }
  std::int32_t q_len(int b) const { return cu_seqlens_q_[b + 1] - cu_seqlens_q_[b]; }
  std::int32_t q_offset(int b) const { return seq_len(b) - q_len(b); }
  bool queries_are_keys() const { return cu_seqlens_q_ == cu_seqlens_; }
  std::int32_t anchor_len(int b) const { return anchor_lens_[b]; }
  // Sorted document starts of sequence b, local offsets, first one 0 (empty when len == 0).
  std::span<const std::int32_t> doc_starts(int b) const;
  int num_documents(int b) const { return static_cast<int>(doc_starts(b).size()); }

  // Local start of the document that holds local token `pos` of sequence b. O(log docs).
  std::int32_t doc_start_of(int b, std::int32_t pos) const;

  // End of the document that holds local key `pos` of sequence b. O(log docs).
  std::int32_t doc_end_of(int b, std::int32_t pos) const;

  // The keys local query q of sequence b sees (mask.h's one definition, fed this layout).
  KeySpans visible_keys(const Mask& mask, int b, std::int32_t q) const;
  // Whether local query q of sequence b sees local key k. For references and tests.
  bool visible(const Mask& mask, int b, std::int32_t q, std::int32_t k) const {
    return visible_keys(mask, b, q).contains(k);
  }

  // Visible (query, key) pairs of the whole batch under `mask`, in O(tokens).
  std::int64_t visible_pairs(const Mask& mask) const;

  const std::vector<std::int32_t>& cu_seqlens() const { return cu_seqlens_; }
  const std::vector<std::int32_t>& cu_seqlens_q() const { return cu_seqlens_q_; }
  const std::vector<std::int32_t>& cu_docs() const { return cu_docs_; }
  const std::vector<std::int32_t>& all_doc_starts() const { return doc_starts_; }
  const std::vector<std::int32_t>& anchor_lens() const { return anchor_lens_; }

 private:
  std::vector<std::int32_t> cu_seqlens_;    // [B+1] keys
  std::vector<std::int32_t> cu_seqlens_q_;  // [B+1] queries (== cu_seqlens_ when not given)
  std::vector<std::int32_t> cu_docs_;       // [B+1], normalised: every non-empty seq starts at 0
  std::vector<std::int32_t> doc_starts_;    // [cu_docs_[B]]
  std::vector<std::int32_t> anchor_lens_;   // [B]
};

}  // namespace anchorctx::attention
