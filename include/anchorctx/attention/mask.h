// The three attention masks the paper compares, over a packed sequence of documents.
//
//   causal     key k visible to query q  iff  k <= q
//   intra_doc  ... iff  k <= q  and  doc(k) == doc(q)
//   anchor     ... iff  k <= q  and (doc(k) == doc(q)  or  k < anchor_len)
//
// Positions are local to a sequence; doc(i) is the document that holds token i.
#pragma once

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

}  // namespace anchorctx::attention
