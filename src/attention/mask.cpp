#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

std::optional<MaskKind> parse_mask_kind(std::string_view name) {
  if (name == "causal") return MaskKind::causal;
  // The hyphenated spelling is what people type on a command line; accept both.
  if (name == "intra_doc" || name == "intra-doc") return MaskKind::intra_doc;
  if (name == "anchor") return MaskKind::anchor;
  return std::nullopt;
}

}  // namespace anchorctx::attention
