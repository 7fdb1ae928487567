// Token embedding, forward (a gather) and backward (a scatter-add).
#include <algorithm>
#include <cstring>

#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/op_profile.h"

namespace anchorctx::model {

void embedding_forward(std::span<const std::int32_t> ids, const float* table, std::int64_t vocab,
                       std::int64_t hidden, float* out) {
  const OpScope scope(Op::embedding);
  const std::int64_t tokens = static_cast<std::int64_t>(ids.size());
  for (std::int64_t t = 0; t < tokens; ++t)
    if (ids[t] < 0 || ids[t] >= vocab)
      fail("embedding: input_ids[{}] = {} is outside the vocabulary [0, {})", t, ids[t], vocab);
#pragma omp parallel for schedule(static) if (tokens > 256)
  for (std::int64_t t = 0; t < tokens; ++t)
    std::memcpy(out + t * hidden, table + static_cast<std::int64_t>(ids[t]) * hidden,
                sizeof(float) * static_cast<std::size_t>(hidden));
}

// Two tokens with the same id add into the same row, so threads own column ranges instead of
// tokens: each element is summed by one thread in token order (no atomics, deterministic).
void embedding_backward(std::span<const std::int32_t> ids, const float* dout, std::int64_t hidden,
                        float* dtable) {
  const OpScope scope(Op::embedding);
  const std::int64_t tokens = static_cast<std::int64_t>(ids.size());
  constexpr std::int64_t kCols = 64;
  const std::int64_t col_blocks = (hidden + kCols - 1) / kCols;
#pragma omp parallel for schedule(static)
  for (std::int64_t cb = 0; cb < col_blocks; ++cb) {
    const std::int64_t c0 = cb * kCols, c1 = std::min(hidden, c0 + kCols);
    for (std::int64_t t = 0; t < tokens; ++t) {
      float* row = dtable + static_cast<std::int64_t>(ids[t]) * hidden;
      const float* g = dout + t * hidden;
      for (std::int64_t c = c0; c < c1; ++c)
        row[c] += g[c];
    }
  }
}

}  // namespace anchorctx::model
