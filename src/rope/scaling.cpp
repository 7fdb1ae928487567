#include "anchorctx/rope/scaling.h"

namespace anchorctx::rope {

std::string_view to_string(RopeScalingType type) {
  switch (type) {
    case RopeScalingType::none:
      return "default";
    case RopeScalingType::linear:
      return "linear";
    case RopeScalingType::dynamic:
      return "dynamic";
    case RopeScalingType::llama3:
      return "llama3";
    case RopeScalingType::yarn:
      return "yarn";
  }
  return "default";
}

std::optional<RopeScalingType> parse_rope_scaling_type(std::string_view name) {
  if (name == "default" || name == "none") return RopeScalingType::none;
  if (name == "linear") return RopeScalingType::linear;
  if (name == "dynamic") return RopeScalingType::dynamic;
  if (name == "llama3") return RopeScalingType::llama3;
  if (name == "yarn") return RopeScalingType::yarn;
  return std::nullopt;
}

}  // namespace anchorctx::rope
