#include "attention/cpu/nan_rules.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "anchorctx/core/bf16.h"

namespace anchorctx::attention::cpu {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// Writes NaN over row t, head h of a [tokens, heads, D] tensor.
void nan_row(core::DType dtype, void* base, const Strides& s, std::int64_t t, int h, int D) {
  const std::int64_t at = t * s.token + h * s.head;
  if (dtype == core::DType::f32) {
    std::fill_n(static_cast<float*>(base) + at, D, kNan);
  } else {
    std::fill_n(static_cast<std::uint16_t*>(base) + at, D, core::float_to_bf16_bits(kNan));
  }
}

// Prefix counts of the flagged keys of one sequence and kv head: bad keys in [a, b) are
// prefix[b] - prefix[a].
struct BadKeys {
  std::vector<std::int32_t> prefix;

  BadKeys(const AttentionLayout& layout, int b, int hk, const std::uint8_t* k_bad,
          const std::uint8_t* v_bad) {
    const std::int64_t tokens = layout.total_tokens();
    const std::int32_t begin = layout.seq_begin(b), len = layout.seq_len(b);
    prefix.assign(len + 1, 0);
    for (std::int32_t j = 0; j < len; ++j) {
      const std::int64_t at = hk * tokens + begin + j;
      prefix[j + 1] = prefix[j] + ((k_bad[at] | v_bad[at]) != 0);
    }
  }
  bool any_in(const KeySpans& s) const {
    const bool anchors = prefix[std::min(s.anchor_end, s.lo)] > 0;
    return anchors || (s.lo < s.hi && prefix[s.hi] - prefix[s.lo] > 0);
  }
};

bool lse_bad(float lse) {
  return std::isnan(lse) || lse == std::numeric_limits<float>::infinity();
}

}  // namespace

bool any_flag(const std::uint8_t* flags, std::int64_t n) {
  return n > 0 && std::memchr(flags, 1, static_cast<std::size_t>(n)) != nullptr;
}

void poison_forward(const BlockPlan& plan, const AttentionDims& dims, const ForwardTensors& t,
                    const ForwardStrides& st, const std::uint8_t* q_bad, const std::uint8_t* k_bad,
                    const std::uint8_t* v_bad) {
  const AttentionLayout& layout = plan.layout();
  const std::int64_t tq = layout.total_q_tokens(), tk = layout.total_tokens();
  if (!any_flag(q_bad, dims.heads_q * tq) && !any_flag(k_bad, dims.heads_kv * tk) &&
      !any_flag(v_bad, dims.heads_kv * tk))
    return;
  const int group = dims.heads_q / dims.heads_kv;
  for (int b = 0; b < layout.num_sequences(); ++b) {
    for (int hk = 0; hk < dims.heads_kv; ++hk) {
      const BadKeys keys(layout, b, hk, k_bad, v_bad);
      for (int h = hk * group; h < (hk + 1) * group; ++h) {
        for (std::int32_t i = 0; i < layout.q_len(b); ++i) {
          const std::int64_t row = layout.q_begin(b) + i;
          if (!q_bad[h * tq + row] && !keys.any_in(layout.visible_keys(plan.mask(), b, i)))
            continue;
          nan_row(t.dtype, t.out, st.out, row, h, dims.head_dim);
          t.lse[h * tq + row] = kNan;
        }
      }
    }
  }
}

void poison_backward(const BlockPlan& plan, const AttentionDims& dims, const BackwardTensors& t,
                     const BackwardStrides& st, const std::uint8_t* q_bad,
                     const std::uint8_t* dout_bad, const std::uint8_t* out_bad,
                     const std::uint8_t* k_bad, const std::uint8_t* v_bad) {
  const AttentionLayout& layout = plan.layout();
  const std::int64_t tq = layout.total_q_tokens(), tk = layout.total_tokens();
  const bool any = any_flag(q_bad, dims.heads_q * tq) || any_flag(dout_bad, dims.heads_q * tq) ||
                   any_flag(out_bad, dims.heads_q * tq) || any_flag(k_bad, dims.heads_kv * tk) ||
                   any_flag(v_bad, dims.heads_kv * tk) ||
                   std::any_of(t.lse, t.lse + dims.heads_q * tq, lse_bad);
  if (!any) return;
  const int group = dims.heads_q / dims.heads_kv;
  std::vector<std::int32_t> reached;  // difference array: keys seen by a bad query row
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const std::int32_t len = layout.seq_len(b);
    for (int hk = 0; hk < dims.heads_kv; ++hk) {
      const BadKeys keys(layout, b, hk, k_bad, v_bad);
      reached.assign(len + 1, 0);
      for (int h = hk * group; h < (hk + 1) * group; ++h) {
        for (std::int32_t i = 0; i < layout.q_len(b); ++i) {
          const std::int64_t row = layout.q_begin(b) + i, at = h * tq + row;
          const KeySpans spans = layout.visible_keys(plan.mask(), b, i);
          if (!q_bad[at] && !dout_bad[at] && !out_bad[at] && !lse_bad(t.lse[at]) &&
              !keys.any_in(spans))
            continue;
          nan_row(t.dtype, t.dq, st.dq, row, h, dims.head_dim);
          ++reached[0];
          --reached[std::min(spans.anchor_end, spans.lo)];
          ++reached[spans.lo];
          --reached[spans.hi];
        }
      }
      std::int32_t cover = 0;
      for (std::int32_t j = 0; j < len; ++j) {
        cover += reached[j];
        if (cover == 0) continue;  // (a bad key seen by a query made that query bad)
        const std::int64_t key = layout.seq_begin(b) + j;
        nan_row(t.dtype, t.dk, st.dk, key, hk, dims.head_dim);
        nan_row(t.dtype, t.dv, st.dv, key, hk, dims.head_dim);
      }
    }
  }
}

}  // namespace anchorctx::attention::cpu
