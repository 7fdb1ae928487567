// Element types of tensors that cross the library's boundary.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::core {

enum class DType { f32, bf16 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : 2;
}

inline constexpr EnumName<DType> kDTypeNames[] = {{DType::f32, "fp32"},
                                                  {DType::bf16, "bf16"},
                                                  {DType::f32, "f32", true},
                                                  {DType::f32, "float32", true},
                                                  {DType::bf16, "bfloat16", true}};
constexpr std::span<const EnumName<DType>> enum_names(DType) {
  return kDTypeNames;
}

constexpr std::string_view to_string(DType t) {
  return enum_name(t);
}

// Accepts "fp32"/"f32"/"float32" and "bf16"/"bfloat16".
std::optional<DType> parse_dtype(std::string_view name);

}  // namespace anchorctx::core
