#include "anchorctx/rope/positions.h"

#include <algorithm>

namespace anchorctx::rope {

std::vector<std::int32_t> position_ids(PositionPolicy policy,
                                       std::span<const std::int32_t> doc_starts,
                                       std::int32_t length, std::span<const std::int32_t> anchors) {
  std::vector<std::int32_t> pos(static_cast<std::size_t>(std::max(length, 0)));
  for (std::int32_t i = 0; i < length; ++i)
    pos[i] = i;
  if (policy == PositionPolicy::reset) {
    for (std::size_t d = 0; d < doc_starts.size(); ++d) {
      const std::int32_t begin = doc_starts[d];
      const std::int32_t end = d + 1 < doc_starts.size() ? doc_starts[d + 1] : length;
      for (std::int32_t i = std::max(begin, 0); i < std::min(end, length); ++i)
        pos[i] = i - begin;
    }
  } else if (policy == PositionPolicy::anchor) {
    for (const std::int32_t a : anchors)
      if (a >= 0 && a < length) pos[a] = 0;
  }
  return pos;
}

}  // namespace anchorctx::rope
