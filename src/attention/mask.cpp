#include "anchorctx/attention/mask.h"

#include <algorithm>
#include <cstdint>

namespace anchorctx::attention {

std::optional<MaskKind> parse_mask_kind(std::string_view name) {
  return core::parse_enum<MaskKind>(name);
}

KeySpans visible_keys(const Mask& mask, const RowFacts& row) {
  const bool whole_sequence = mask.kind == MaskKind::causal;
  std::int32_t lo = whole_sequence ? 0 : row.doc_start;
  std::int32_t hi = mask.causal ? row.pos + 1 : (whole_sequence ? row.seq_len : row.doc_end);
  if (mask.window > 0) {
    // In 64 bits: a window near INT32_MAX (any window longer than the sequence means none)
    // overflowed pos + window, and every query past the first saw no key.
    const std::int64_t pos = row.pos, window = mask.window;
    lo = static_cast<std::int32_t>(std::max<std::int64_t>(lo, pos - window + 1));
    hi = static_cast<std::int32_t>(std::min<std::int64_t>(hi, pos + window));
  }
  const std::int32_t anchor_end = mask.kind == MaskKind::anchor ? std::min(row.anchor_len, hi) : 0;
  return {anchor_end, lo, hi};
}

}  // namespace anchorctx::attention
