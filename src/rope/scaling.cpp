#include "anchorctx/rope/scaling.h"

namespace anchorctx::rope {

std::string_view to_string(RopeScalingType type) {
  return core::enum_name(type);
}

std::optional<RopeScalingType> parse_rope_scaling_type(std::string_view name) {
  return core::parse_enum<RopeScalingType>(name);
}

}  // namespace anchorctx::rope
