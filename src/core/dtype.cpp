#include "anchorctx/core/dtype.h"

namespace anchorctx::core {

std::optional<DType> parse_dtype(std::string_view name) {
  if (name == "fp32" || name == "f32" || name == "float32") return DType::f32;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  return std::nullopt;
}

}  // namespace anchorctx::core
