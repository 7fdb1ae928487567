// Dense float64 attention, written for obviousness rather than speed: per sequence and query
// head, the full [Lq x Lk] score matrix of the sequence is formed from
// AttentionLayout::visible() and softmaxed row by row. The kernels are checked against this file,
// so it shares no code with them.
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
  std::int64_t tokens;    // queries
  std::int64_t tokens_k;  // keys
  int hq;
  int hkv;
  int d;
  int group;  // query heads per key/value head

  // Offsets of the head_dim-long rows of token t (global index) in q/out/dout and in k/v.
  std::int64_t q_at(std::int64_t t, int h) const { return (t * hq + h) * d; }
  std::int64_t kv_at(std::int64_t t, int hk) const { return (t * hkv + hk) * d; }
};

// One sequence: its queries [q_begin, q_begin + lq) and keys [k_begin, k_begin + lk).
struct Seq {
  std::int32_t q_begin, lq, k_begin, lk;
};
Seq sequence(const AttentionLayout& layout, int b) {
  return {layout.q_begin(b), layout.q_len(b), layout.seq_begin(b), layout.seq_len(b)};
}

Shape check_shape(const AttentionLayout& layout, const AttentionDims& dims) {
  require(dims.heads_q > 0 && dims.heads_kv > 0 && dims.head_dim > 0,
          "reference: heads_q, heads_kv and head_dim must be positive (got {}, {}, {})",
          dims.heads_q, dims.heads_kv, dims.head_dim);
  require(dims.heads_q % dims.heads_kv == 0,
          "reference: heads_q ({}) is not a multiple of heads_kv ({})", dims.heads_q,
          dims.heads_kv);
  return {layout.total_q_tokens(), layout.total_tokens(), dims.heads_q,
          dims.heads_kv,           dims.head_dim,         dims.heads_q / dims.heads_kv};
}

void check_size(std::span<const double> x, std::int64_t expected, const char* name) {
  require(static_cast<std::int64_t>(x.size()) == expected,
          "reference: tensor {} has {} elements, expected {}", name, x.size(), expected);
}

double resolve_scale(double scale, int head_dim) {
  return scale != 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// Row-major [lq x lk] probabilities of sequence b, query head h: P[i][j] = softmax_j(scale *
// q_i . k_j) over the visible j, 0 elsewhere. lse_row[i] gets the log-sum-exp of the visible
// scores (-inf for a row that sees nothing, whose probabilities stay all 0).
void probabilities(const AttentionLayout& layout, const Mask& mask, const Shape& s, int b, int h,
                   std::span<const double> q, std::span<const double> k, double scale,
                   std::vector<double>& p, std::vector<double>& lse_row) {
  const Seq seq = sequence(layout, b);
  const std::int32_t lq = seq.lq, len = seq.lk;
  const int hk = h / s.group;
  p.assign(static_cast<std::size_t>(lq) * len, 0.0);
  lse_row.assign(lq, -std::numeric_limits<double>::infinity());
  std::vector<double> scores(len);
  for (std::int32_t i = 0; i < lq; ++i) {
    const double* qi = &q[s.q_at(seq.q_begin + i, h)];
    double row_max = -std::numeric_limits<double>::infinity();
    for (std::int32_t j = 0; j < len; ++j) {
      if (!layout.visible(mask, b, i, j)) continue;
      const double* kj = &k[s.kv_at(seq.k_begin + j, hk)];
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

void check_inputs(const Shape& s, std::span<const double> q, std::span<const double> k,
                  std::span<const double> v) {
  check_size(q, s.tokens * s.hq * s.d, "q");
  check_size(k, s.tokens_k * s.hkv * s.d, "k");
  check_size(v, s.tokens_k * s.hkv * s.d, "v");
}

// The backward's gradient outputs (or their error scales), named as the caller names them.
void check_gradients(const Shape& s, std::span<const double> dq, std::span<const double> dk,
                     std::span<const double> dv, const char* dq_name, const char* dk_name,
                     const char* dv_name) {
  check_size(dq, s.tokens * s.hq * s.d, dq_name);
  check_size(dk, s.tokens_k * s.hkv * s.d, dk_name);
  check_size(dv, s.tokens_k * s.hkv * s.d, dv_name);
}

double dot(const double* a, const double* b, int d) {
  double sum = 0.0;
  for (int c = 0; c < d; ++c)
    sum += a[c] * b[c];
  return sum;
}

// dS = P * (dP - rowsum(dO * O)) of one sequence and query head h, row-major [lq x lk] like
// p; O is recomputed from P so the reference needs nothing from the forward.
void score_gradients(const Shape& s, const Seq& seq, int h, const std::vector<double>& p,
                     std::span<const double> v, std::span<const double> dout,
                     std::vector<double>& ds) {
  const int hk = h / s.group;
  const std::int32_t begin = seq.k_begin, len = seq.lk;
  ds.assign(static_cast<std::size_t>(seq.lq) * len, 0.0);
  std::vector<double> out_row(s.d);
  for (std::int32_t i = 0; i < seq.lq; ++i) {
    const std::size_t row = static_cast<std::size_t>(i) * len;
    std::fill(out_row.begin(), out_row.end(), 0.0);
    for (std::int32_t j = 0; j < len; ++j) {
      if (p[row + j] == 0.0) continue;  // masked (or underflowed): contributes nothing anywhere
      for (int c = 0; c < s.d; ++c)
        out_row[c] += p[row + j] * v[s.kv_at(begin + j, hk) + c];
    }
    const double* dout_i = &dout[s.q_at(seq.q_begin + i, h)];
    const double di = dot(dout_i, out_row.data(), s.d);  // D_i = rowsum(dO * O)
    for (std::int32_t j = 0; j < len; ++j) {
      if (p[row + j] == 0.0) continue;  // dS = 0 there
      ds[row + j] = p[row + j] * (dot(dout_i, &v[s.kv_at(begin + j, hk)], s.d) - di);
    }
  }
}

// The backward's last step over one (sequence, query head): dq_i = scale sum_j dS_ij k_j
// (written), dk_j += scale sum_i dS_ij q_i and dv_j += sum_i P_ij dO_i (accumulated over the
// query heads of a group). The error scales run it on absolute values.
void accumulate_gradients(const Shape& s, const Seq& seq, int h, const std::vector<double>& ds,
                          const std::vector<double>& p, std::span<const double> q,
                          std::span<const double> k, std::span<const double> dout, double scale,
                          std::span<double> dq, std::span<double> dk, std::span<double> dv) {
  const int hk = h / s.group;
  const std::int32_t len = seq.lk;
  for (std::int32_t i = 0; i < seq.lq; ++i) {
    double* dqi = &dq[s.q_at(seq.q_begin + i, h)];
    std::fill(dqi, dqi + s.d, 0.0);
    for (std::int32_t j = 0; j < len; ++j) {
      const std::size_t ij = static_cast<std::size_t>(i) * len + j;
      if (p[ij] == 0.0) continue;  // then dS = 0 as well
      const std::int64_t kj = s.kv_at(seq.k_begin + j, hk), qi = s.q_at(seq.q_begin + i, h);
      for (int c = 0; c < s.d; ++c) {
        dqi[c] += scale * ds[ij] * k[kj + c];
        dk[kj + c] += scale * ds[ij] * q[qi + c];
        dv[kj + c] += p[ij] * dout[qi + c];
      }
    }
  }
}

std::vector<double> absolute(std::span<const double> x) {
  std::vector<double> a(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    a[i] = std::fabs(x[i]);
  return a;
}

}  // namespace

void reference_forward(const AttentionLayout& layout, const Mask& mask, const AttentionDims& dims,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<double> out, std::span<double> lse,
                       double scale) {
  const Shape s = check_shape(layout, dims);
  check_inputs(s, q, k, v);
  check_size(out, s.tokens * s.hq * s.d, "out");
  check_size(lse, s.tokens * s.hq, "lse");
  scale = resolve_scale(scale, s.d);

  std::vector<double> p;
  std::vector<double> lse_row;
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const Seq seq = sequence(layout, b);
    const std::int32_t len = seq.lk;
    for (int h = 0; h < s.hq; ++h) {
      const int hk = h / s.group;
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      for (std::int32_t i = 0; i < seq.lq; ++i) {
        double* oi = &out[s.q_at(seq.q_begin + i, h)];
        for (int c = 0; c < s.d; ++c)
          oi[c] = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          const double pij = p[static_cast<std::size_t>(i) * len + j];
          if (pij == 0.0) continue;
          const double* vj = &v[s.kv_at(seq.k_begin + j, hk)];
          for (int c = 0; c < s.d; ++c)
            oi[c] += pij * vj[c];
        }
        lse[h * s.tokens + seq.q_begin + i] = lse_row[i];
      }
    }
  }
}

void reference_backward(const AttentionLayout& layout, const Mask& mask, const AttentionDims& dims,
                        std::span<const double> q, std::span<const double> k,
                        std::span<const double> v, std::span<const double> dout,
                        std::span<double> dq, std::span<double> dk, std::span<double> dv,
                        double scale) {
  const Shape s = check_shape(layout, dims);
  check_inputs(s, q, k, v);
  check_size(dout, s.tokens * s.hq * s.d, "dout");
  check_gradients(s, dq, dk, dv, "dq", "dk", "dv");
  scale = resolve_scale(scale, s.d);

  // dk and dv accumulate over the query heads of a group, so they start from zero.
  std::fill(dk.begin(), dk.end(), 0.0);
  std::fill(dv.begin(), dv.end(), 0.0);
  std::vector<double> p, lse_row, ds;
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const Seq seq = sequence(layout, b);
    for (int h = 0; h < s.hq; ++h) {
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      score_gradients(s, seq, h, p, v, dout, ds);
      accumulate_gradients(s, seq, h, ds, p, q, k, dout, scale, dq, dk, dv);
    }
  }
}

void reference_error_scales(const AttentionLayout& layout, const Mask& mask,
                            const AttentionDims& dims, std::span<const double> q,
                            std::span<const double> k, std::span<const double> v,
                            std::span<const double> dout, std::span<double> out_scale,
                            std::span<double> lse_scale, std::span<double> dq_scale,
                            std::span<double> dk_scale, std::span<double> dv_scale, double scale) {
  const Shape s = check_shape(layout, dims);
  check_inputs(s, q, k, v);
  check_size(dout, s.tokens * s.hq * s.d, "dout");
  check_size(out_scale, s.tokens * s.hq * s.d, "out_scale");
  check_size(lse_scale, s.tokens * s.hq, "lse_scale");
  check_gradients(s, dq_scale, dk_scale, dv_scale, "dq_scale", "dk_scale", "dv_scale");
  scale = resolve_scale(scale, s.d);

  const std::vector<double> q_abs = absolute(q), k_abs = absolute(k), v_abs = absolute(v),
                            dout_abs = absolute(dout);
  std::fill(dk_scale.begin(), dk_scale.end(), 0.0);
  std::fill(dv_scale.begin(), dv_scale.end(), 0.0);
  std::vector<double> p, lse_row, ds;
  std::vector<double> weight;  // P_ij times its sensitivity to score errors
  std::vector<double> ds_abs;  // the sizes of dS_ij's operands
  std::vector<double> score_abs;
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const Seq seq = sequence(layout, b);
    const std::int32_t begin = seq.k_begin, len = seq.lk;
    for (int h = 0; h < s.hq; ++h) {
      const int hk = h / s.group;
      probabilities(layout, mask, s, b, h, q, k, scale, p, lse_row);
      score_gradients(s, seq, h, p, v, dout, ds);
      weight.assign(static_cast<std::size_t>(seq.lq) * len, 0.0);
      ds_abs.assign(static_cast<std::size_t>(seq.lq) * len, 0.0);
      score_abs.assign(len, 0.0);
      for (std::int32_t i = 0; i < seq.lq; ++i) {
        const std::size_t row = static_cast<std::size_t>(i) * len;
        const double* q_i = &q_abs[s.q_at(seq.q_begin + i, h)];
        const double* dout_i = &dout_abs[s.q_at(seq.q_begin + i, h)];
        double score_abs_max = 0.0;
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          score_abs[j] = std::fabs(scale) * dot(q_i, &k_abs[s.kv_at(begin + j, hk)], s.d);
          score_abs_max = std::max(score_abs_max, score_abs[j]);
        }
        lse_scale[h * s.tokens + seq.q_begin + i] = 1.0 + score_abs_max;
        double* o_abs = &out_scale[s.q_at(seq.q_begin + i, h)];
        std::fill(o_abs, o_abs + s.d, 0.0);
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          weight[row + j] = p[row + j] * (1.0 + score_abs[j] + score_abs_max);  // P's sensitivity
          for (int c = 0; c < s.d; ++c)
            o_abs[c] += weight[row + j] * v_abs[s.kv_at(begin + j, hk) + c];
        }
        // dS = P (dP - D): its operands P |dO||v| and P |dO||O|, and P's own error times
        // |dP - D| (= |dS| / P).
        const double d_abs = dot(dout_i, o_abs, s.d);
        for (std::int32_t j = 0; j < len; ++j) {
          if (p[row + j] == 0.0) continue;
          const double dp_abs = dot(dout_i, &v_abs[s.kv_at(begin + j, hk)], s.d);
          ds_abs[row + j] =
              p[row + j] * (dp_abs + d_abs) + weight[row + j] / p[row + j] * std::fabs(ds[row + j]);
        }
      }
      accumulate_gradients(s, seq, h, ds_abs, weight, q_abs, k_abs, dout_abs, std::fabs(scale),
                           dq_scale, dk_scale, dv_scale);
    }
  }
}

}  // namespace anchorctx::attention
