// Element types of tensors that cross the library's boundary.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace anchorctx::core {

enum class DType { f32, bf16 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : 2;
}

constexpr std::string_view to_string(DType t) {
  return t == DType::f32 ? "fp32" : "bf16";
}

// Accepts "fp32"/"f32"/"float32" and "bf16"/"bfloat16".
std::optional<DType> parse_dtype(std::string_view name);

}  // namespace anchorctx::core
