#include "anchorctx/rope/rope.h"

namespace anchorctx::rope {

std::string_view to_string(RopeMode mode) {
  switch (mode) {
    case RopeMode::fp32:
      return "fp32";
    case RopeMode::hf_bf16:
      return "hf_bf16";
    case RopeMode::exact:
      return "exact";
  }
  return "fp32";
}

std::optional<RopeMode> parse_rope_mode(std::string_view name) {
  if (name == "fp32") return RopeMode::fp32;
  if (name == "hf_bf16") return RopeMode::hf_bf16;
  if (name == "exact") return RopeMode::exact;
  return std::nullopt;
}

}  // namespace anchorctx::rope
