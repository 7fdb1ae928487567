// The three attention masks the paper compares, over a packed sequence of documents.
//
//   causal     key k visible to query q  iff  k <= q
//   intra_doc  ... iff  k <= q  and  doc(k) == doc(q)
//   anchor     ... iff  k <= q  and (doc(k) == doc(q)  or  k < anchor_len)
//
// Positions are local to a sequence; doc(i) is the document that holds token i.
#pragma once

#include <optional>
#include <string_view>

namespace anchorctx::attention {

enum class MaskKind { causal, intra_doc, anchor };

constexpr std::string_view to_string(MaskKind m) {
  switch (m) {
    case MaskKind::causal:
      return "causal";
    case MaskKind::intra_doc:
      return "intra_doc";
    case MaskKind::anchor:
      return "anchor";
  }
  return "?";
}

std::optional<MaskKind> parse_mask_kind(std::string_view name);

}  // namespace anchorctx::attention
