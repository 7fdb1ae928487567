#include "anchorctx/rope/rope.h"

namespace anchorctx::rope {

std::string_view to_string(RopeMode mode) {
  return core::enum_name(mode);
}

std::optional<RopeMode> parse_rope_mode(std::string_view name) {
  return core::parse_enum<RopeMode>(name);
}

}  // namespace anchorctx::rope
