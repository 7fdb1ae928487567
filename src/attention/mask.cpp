#include "anchorctx/attention/mask.h"

namespace anchorctx::attention {

std::optional<MaskKind> parse_mask_kind(std::string_view name) {
  return core::parse_enum<MaskKind>(name);
}

}  // namespace anchorctx::attention
