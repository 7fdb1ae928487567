// Dense float64 attention, written for obviousness rather than speed: per sequence and query
// head, the full score matrix of the sequence is formed from AttentionLayout::visible() and
// softmaxed row by row. The kernels are checked against this file, so it shares no code with them.
#include "anchorctx/attention/reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "anchorctx/core/error.h"

namespace anchorctx::attention {
namespace {

struct Shape {
  std::int64_t tokens;
  int hq;
  int hkv;
  int d;
  int group;  // query heads per key/value head
};

Shape check_shape(const AttentionLayout& layout, const AttentionDims& dims) {
  require(dims.heads_q > 0 && dims.heads_kv > 0 && dims.head_dim > 0,
          "reference: heads_q, heads_kv and head_dim must be positive (got {}, {}, {})",
          dims.heads_q, dims.heads_kv, dims.head_dim);
  require(dims.heads_q % dims.heads_kv == 0,
          "reference: heads_q ({}) is not a multiple of heads_kv ({})", dims.heads_q,
          dims.heads_kv);
  return {layout.total_tokens(), dims.heads_q, dims.heads_kv, dims.head_dim,
          dims.heads_q / dims.heads_kv};
}

void check_size(std::span<const double> x, std::int64_t expected, const char* name) {
  require(static_cast<std::int64_t>(x.size()) == expected,
          "reference: tensor {} has {} elements, expected {}", name, x.size(), expected);
}

double resolve_scale(double scale, int head_dim) {
  return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// Row-major [len x len] probabilities of sequence b, query head h: P[i][j] = softmax_j(scale *
// q_i . k_j) over the visible j, 0 elsewhere. lse_row[i] gets the log-sum-exp of the visible
// scores (-inf for a row that sees nothing, whose probabilities stay all 0).
void probabilities(const AttentionLayout& layout, MaskKind mask, const Shape& s, int b, int h,
                   std::span<const double> q, std::span<const double> k, double scale,
                   std::vector<double>& p, std::vector<double>& lse_row) {
  const std::int32_t begin = layout.seq_begin(b);
  const std::int32_t len = layout.seq_len(b);
  const int hk = h / s.group;
  p.assign(static_cast<std::size_t>(len) * len, 0.0);
  lse_row.assign(len, -std::numeric_limits<double>::infinity());
  std::vector<double> scores(len);
  for (std::int32_t i = 0; i < len; ++i) {
    const double* qi = &q[((begin + i) * static_cast<std::int64_t>(s.hq) + h) * s.d];
    double row_max = -std::numeric_limits<double>::infinity();
    for (std::int32_t j = 0; j < len; ++j) {
      if (!layout.visible(mask, b, i, j)) continue;
      const double* kj = &k[((begin + j) * static_cast<std::int64_t>(s.hkv) + hk) * s.d];
      double dot = 0.0;
      for (int c = 0; c < s.d; ++c)
        dot += qi[c] * kj[c];
      scores[j] = scale * dot;
      if (scores[j] > row_max) row_max = scores[j];
    }
    if (row_max == -std::numeric_limits<double>::infinity()) continue;  // sees nothing
    double sum = 0.0;
    for (std::int32_t j = 0; j < len; ++j) {
      if (!layout.visible(mask, b, i, j)) continue;
      // Subtracting the row maximum keeps exp() from overflowing; it cancels in the ratio.
      const double e = std::exp(scores[j] - row_max);
      p[static_cast<std::size_t>(i) * len + j] = e;
      sum += e;
    }
    for (std::int32_t j = 0; j < len; ++j)
      p[static_cast<std::size_t>(i) * len + j] /= sum;
    lse_row[i] = row_max + std::log(sum);
  }
}

}  // namespace

void reference_forward(const AttentionLayout& layout, MaskKind mask, const AttentionDims& dims,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<double> out, std::span<double> lse,
                       double scale) {
  const Shape s = check_shape(layout, dims);
  check_size(q, s.tokens * s.hq * s.d, "q");
  check_size(k, s.tokens * s.hkv * s.d, "k");
  check_size(v, s.tokens * s.hkv * s.d, "v");
  check_size(out, s.tokens * s.hq * s.d, "out");
  check_size(lse, s.tokens * s.hq, "lse");
  scale = resolve_scale(scale, s.d);

  std::vector<double> p;
  std::vector<double> lse_row;
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const std::int32_t begin = layout.seq_begin(b);
    const std::int32_t len = layout.seq_len(b);
    for (int h = 0; h < s.hq; ++h) {
      const int hk = h / s.group;
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      for (std::int32_t i = 0; i < len; ++i) {
        double* oi = &out[((begin + i) * static_cast<std::int64_t>(s.hq) + h) * s.d];
        for (int c = 0; c < s.d; ++c)
          oi[c] = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          const double pij = p[static_cast<std::size_t>(i) * len + j];
          if (pij == 0.0) continue;
          const double* vj = &v[((begin + j) * static_cast<std::int64_t>(s.hkv) + hk) * s.d];
          for (int c = 0; c < s.d; ++c)
            oi[c] += pij * vj[c];
        }
        lse[h * s.tokens + begin + i] = lse_row[i];
      }
    }
  }
}

void reference_backward(const AttentionLayout& layout, MaskKind mask, const AttentionDims& dims,
                        std::span<const double> q, std::span<const double> k,
                        std::span<const double> v, std::span<const double> dout,
                        std::span<double> dq, std::span<double> dk, std::span<double> dv,
                        double scale) {
  const Shape s = check_shape(layout, dims);
  check_size(q, s.tokens * s.hq * s.d, "q");
  check_size(k, s.tokens * s.hkv * s.d, "k");
  check_size(v, s.tokens * s.hkv * s.d, "v");
  check_size(dout, s.tokens * s.hq * s.d, "dout");
  check_size(dq, s.tokens * s.hq * s.d, "dq");
  check_size(dk, s.tokens * s.hkv * s.d, "dk");
  check_size(dv, s.tokens * s.hkv * s.d, "dv");
  scale = resolve_scale(scale, s.d);

  // dk and dv accumulate over the query heads of a group, so they start from zero.
  for (double& x : dk)
    x = 0.0;
  for (double& x : dv)
    x = 0.0;

  std::vector<double> p;
  std::vector<double> lse_row;
  std::vector<double> dp;
  std::vector<double> out_row(s.d);
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const std::int32_t begin = layout.seq_begin(b);
    const std::int32_t len = layout.seq_len(b);
    const auto qrow = [&](std::int32_t i, int h) {
      return ((begin + i) * static_cast<std::int64_t>(s.hq) + h) * s.d;
    };
    const auto kvrow = [&](std::int32_t j, int hk) {
      return ((begin + j) * static_cast<std::int64_t>(s.hkv) + hk) * s.d;
    };
    for (int h = 0; h < s.hq; ++h) {
      const int hk = h / s.group;
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      dp.assign(static_cast<std::size_t>(len) * len, 0.0);
      for (std::int32_t i = 0; i < len; ++i) {
        // O recomputed here so the reference needs nothing from the forward.
        for (int c = 0; c < s.d; ++c)
          out_row[c] = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          const double pij = p[static_cast<std::size_t>(i) * len + j];
          if (pij == 0.0) continue;  // masked (or underflowed): contributes nothing anywhere
          for (int c = 0; c < s.d; ++c)
            out_row[c] += pij * v[kvrow(j, hk) + c];
        }
        // D_i = rowsum(dO * O).
        double di = 0.0;
        for (int c = 0; c < s.d; ++c)
          di += dout[qrow(i, h) + c] * out_row[c];
        // dP = dO V^T, then dS = P * (dP - D).
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[static_cast<std::size_t>(i) * len + j] == 0.0) continue;  // dS = 0 there
          double dpij = 0.0;
          for (int c = 0; c < s.d; ++c)
            dpij += dout[qrow(i, h) + c] * v[kvrow(j, hk) + c];
          const std::size_t ij = static_cast<std::size_t>(i) * len + j;
          dp[ij] = p[ij] * (dpij - di);  // dS
        }
      }
      for (std::int32_t i = 0; i < len; ++i) {
        double* dqi = &dq[qrow(i, h)];
        for (int c = 0; c < s.d; ++c)
          dqi[c] = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          const std::size_t ij = static_cast<std::size_t>(i) * len + j;
          const double ds = dp[ij];
          const double pij = p[ij];
          if (pij == 0.0) continue;  // then dS = 0 as well
          for (int c = 0; c < s.d; ++c) {
            dqi[c] += scale * ds * k[kvrow(j, hk) + c];
            dk[kvrow(j, hk) + c] += scale * ds * q[qrow(i, h) + c];
            dv[kvrow(j, hk) + c] += pij * dout[qrow(i, h) + c];
          }
        }
      }
    }
  }
}

void reference_error_scales(const AttentionLayout& layout, MaskKind mask, const AttentionDims& dims,
                            std::span<const double> q, std::span<const double> k,
                            std::span<const double> v, std::span<const double> dout,
                            std::span<double> out_scale, std::span<double> lse_scale,
                            std::span<double> dq_scale, std::span<double> dk_scale,
                            std::span<double> dv_scale, double scale) {
  const Shape s = check_shape(layout, dims);
  check_size(q, s.tokens * s.hq * s.d, "q");
  check_size(k, s.tokens * s.hkv * s.d, "k");
  check_size(v, s.tokens * s.hkv * s.d, "v");
  check_size(dout, s.tokens * s.hq * s.d, "dout");
  check_size(out_scale, s.tokens * s.hq * s.d, "out_scale");
  check_size(lse_scale, s.tokens * s.hq, "lse_scale");
  check_size(dq_scale, s.tokens * s.hq * s.d, "dq_scale");
  check_size(dk_scale, s.tokens * s.hkv * s.d, "dk_scale");
  check_size(dv_scale, s.tokens * s.hkv * s.d, "dv_scale");
  scale = resolve_scale(scale, s.d);

  for (double& x : dk_scale)
    x = 0.0;
  for (double& x : dv_scale)
    x = 0.0;

  std::vector<double> p, lse_row;
  std::vector<double> weight;  // P_ij times its sensitivity to score errors
  std::vector<double> ds_abs;  // the sizes of dS_ij's operands
  std::vector<double> score_abs;
  std::vector<double> o(s.d), o_abs(s.d);
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const std::int32_t begin = layout.seq_begin(b);
    const std::int32_t len = layout.seq_len(b);
    const auto qrow = [&](std::int32_t i, int h) {
      return ((begin + i) * static_cast<std::int64_t>(s.hq) + h) * s.d;
    };
    const auto kvrow = [&](std::int32_t j, int hk) {
      return ((begin + j) * static_cast<std::int64_t>(s.hkv) + hk) * s.d;
    };
    for (int h = 0; h < s.hq; ++h) {
      const int hk = h / s.group;
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      weight.assign(static_cast<std::size_t>(len) * len, 0.0);
      ds_abs.assign(static_cast<std::size_t>(len) * len, 0.0);
      score_abs.assign(len, 0.0);
      for (std::int32_t i = 0; i < len; ++i) {
        const std::size_t row = static_cast<std::size_t>(i) * len;
        double score_abs_max = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          double dot = 0.0;
          for (int c = 0; c < s.d; ++c)
            dot += std::fabs(q[qrow(i, h) + c]) * std::fabs(k[kvrow(j, hk) + c]);
          score_abs[j] = scale * dot;
          score_abs_max = std::max(score_abs_max, score_abs[j]);
        }
        lse_scale[h * s.tokens + begin + i] = 1.0 + score_abs_max;
        std::fill(o.begin(), o.end(), 0.0);
        std::fill(o_abs.begin(), o_abs.end(), 0.0);
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          weight[row + j] = p[row + j] * (1.0 + score_abs[j] + score_abs_max);
          for (int c = 0; c < s.d; ++c) {
            o[c] += p[row + j] * v[kvrow(j, hk) + c];
            o_abs[c] += weight[row + j] * std::fabs(v[kvrow(j, hk) + c]);
          }
        }
        double delta = 0.0, delta_abs = 0.0;
        for (int c = 0; c < s.d; ++c) {
          out_scale[qrow(i, h) + c] = o_abs[c];
          delta += dout[qrow(i, h) + c] * o[c];
          delta_abs += std::fabs(dout[qrow(i, h) + c]) * o_abs[c];
        }
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          double dp = 0.0, dp_abs = 0.0;
          for (int c = 0; c < s.d; ++c) {
            dp += dout[qrow(i, h) + c] * v[kvrow(j, hk) + c];
            dp_abs += std::fabs(dout[qrow(i, h) + c]) * std::fabs(v[kvrow(j, hk) + c]);
          }
          ds_abs[row + j] =
              p[row + j] * (dp_abs + delta_abs) + weight[row + j] * std::fabs(dp - delta);
        }
      }
      for (std::int32_t i = 0; i < len; ++i) {
        double* dqi = &dq_scale[qrow(i, h)];
        for (int c = 0; c < s.d; ++c)
          dqi[c] = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          const std::size_t ij = static_cast<std::size_t>(i) * len + j;
          if (p[ij] == 0.0) continue;
          for (int c = 0; c < s.d; ++c) {
            dqi[c] += scale * ds_abs[ij] * std::fabs(k[kvrow(j, hk) + c]);
            dk_scale[kvrow(j, hk) + c] += scale * ds_abs[ij] * std::fabs(q[qrow(i, h) + c]);
            dv_scale[kvrow(j, hk) + c] += weight[ij] * std::fabs(dout[qrow(i, h) + c]);
          }
        }
      }
    }
  }
}

}  // namespace anchorctx::attention
