#include "anchorctx/core/dtype.h"

namespace anchorctx::core {

std::optional<DType> parse_dtype(std::string_view name) {
  return parse_enum<DType>(name);
}

}  // namespace anchorctx::core
