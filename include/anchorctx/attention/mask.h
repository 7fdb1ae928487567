// The attention masks, defined once: `visible_keys` below says which keys one query row sees,
// and everything else -- AttentionLayout::visible and visible_pairs, the BlockPlan's tiles, the
// kernels' column windows and row masks, the float64 reference and the kernels' NaN rules --
// is derived from it (as FlexAttention derives its block mask from one mask_mod).
//
// The three masks the paper compares, over a packed sequence of documents:
//
//   causal     key k visible to query q  iff  k <= q
//   intra_doc  ... iff  k <= q  and  doc(k) == doc(q)
//   anchor     ... iff  k <= q  and (doc(k) == doc(q)  or  k < anchor_len)
//
// Positions are local to a sequence, in key coordinates: with fewer queries than keys (prefill
// with a cache, decode) the queries are the LAST Lq positions of the Lk keys, as in
// flash_attn_varlen_func, so query i stands at key position i + Lk - Lq. doc(i) is the
// document that holds token i. Two modifiers apply to every kind:
//
//   window > 0     a query sees only keys within `window` positions of its own (itself
//                  included: k > q - window); anchors stay visible (attention sinks)
//   causal = false a query also sees the later keys of its document (of its sequence for the
//                  causal kind); anchors stay visible
//
// Adding a mask means adding its rule to visible_keys (mask.cpp) and to the tests' oracle.
// Every rule must keep the promises the plan and the kernels build on: a query sees itself,
// and lo, hi and anchor_end never decrease as the query position grows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::attention {

enum class MaskKind { causal, intra_doc, anchor };

// The names of the masks (core/enum_names.h); `intra-doc` is what people type on a command line.
inline constexpr core::EnumName<MaskKind> kMaskKindNames[] = {
    {MaskKind::causal, "causal"},
    {MaskKind::intra_doc, "intra_doc"},
    {MaskKind::intra_doc, "intra-doc", true},
    {MaskKind::anchor, "anchor"}};
constexpr std::span<const core::EnumName<MaskKind>> enum_names(MaskKind) {
  return kMaskKindNames;
}

constexpr std::string_view to_string(MaskKind m) {
  return core::enum_name(m);
}

std::optional<MaskKind> parse_mask_kind(std::string_view name);

// A mask kind with its modifiers. Every MaskKind converts to the plain causal form.
struct Mask {
  MaskKind kind = MaskKind::causal;
  std::int32_t window = 0;  // > 0: sliding window of that many positions; 0: unlimited
  bool causal = true;       // false: whole documents (bidirectional within a document)

  Mask() = default;
  Mask(MaskKind k) : kind(k) {}  // NOLINT(google-explicit-constructor): a kind is a mask
  Mask(MaskKind k, std::int32_t w, bool c) : kind(k), window(w), causal(c) {}
  bool operator==(const Mask&) const = default;
};

// What a mask needs to know about one query row, all in key positions local to the sequence.
struct RowFacts {
  std::int32_t pos;         // the query's own position among the keys
  std::int32_t doc_start;   // first key of its document
  std::int32_t doc_end;     // one past the last key of its document
  std::int32_t seq_len;     // keys in the sequence
  std::int32_t anchor_len;  // leading anchor keys of the sequence
};

// The keys one query row sees: [0, anchor_end) and [lo, hi), with anchor_end <= hi.
struct KeySpans {
  std::int32_t anchor_end;
  std::int32_t lo, hi;

  bool contains(std::int32_t k) const { return k < anchor_end || (k >= lo && k < hi); }
  // How many keys are visible.
  std::int64_t count() const {
    return static_cast<std::int64_t>(hi - lo) + std::min(anchor_end, lo);
  }
};

// THE definition of every mask (see the top of this file).
KeySpans visible_keys(const Mask& mask, const RowFacts& row);

}  // namespace anchorctx::attention
