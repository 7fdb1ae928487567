// The row orders of wq/wk in llama2.c (RoPE on adjacent pairs) and in HuggingFace (rotate-half
// pairs (i, i + D/2)): import permutes one way, export the other.
#include <cstring>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/llama2c.h"

namespace anchorctx::model {

namespace {

// Per head: adjacent-pair row 2i <-> rotate-half row i, and 2i + 1 <-> i + D/2.
void reorder_rotary_rows(std::span<float> w, std::int32_t n_heads, std::int32_t head_dim,
                         std::int64_t cols, bool to_rotate_half, const char* name) {
  require(n_heads > 0 && head_dim > 0 && head_dim % 2 == 0 && cols > 0,
          "{}: bad shape (heads {}, head_dim {}, cols {})", name, n_heads, head_dim, cols);
  const std::size_t row = static_cast<std::size_t>(cols);
  const std::size_t head_rows = static_cast<std::size_t>(head_dim);
  require(w.size() == static_cast<std::size_t>(n_heads) * head_rows * row,
          "{}: {} values, expected {} heads x {} rows x {} columns", name, w.size(), n_heads,
          head_dim, cols);
  const std::size_t half = head_rows / 2;
  std::vector<float> head(head_rows * row);
  for (std::int32_t h = 0; h < n_heads; ++h) {
    float* base = w.data() + static_cast<std::size_t>(h) * head_rows * row;
    std::memcpy(head.data(), base, head.size() * sizeof(float));
    for (std::size_t i = 0; i < half; ++i) {
      const std::size_t pair[2] = {2 * i, 2 * i + 1}, halves[2] = {i, i + half};
      for (int k = 0; k < 2; ++k) {
        const std::size_t to = to_rotate_half ? halves[k] : pair[k];
        const std::size_t from = to_rotate_half ? pair[k] : halves[k];
        std::memcpy(base + to * row, head.data() + from * row, row * sizeof(float));
      }
    }
  }
}

}  // namespace

void permute_rotary_rows(std::span<float> w, std::int32_t n_heads, std::int32_t head_dim,
                         std::int64_t cols) {
  reorder_rotary_rows(w, n_heads, head_dim, cols, true, "permute_rotary_rows");
}

void unpermute_rotary_rows(std::span<float> w, std::int32_t n_heads, std::int32_t head_dim,
                           std::int64_t cols) {
  reorder_rotary_rows(w, n_heads, head_dim, cols, false, "unpermute_rotary_rows");
}

}  // namespace anchorctx::model
