// rope-drift: the measurement (include/anchorctx/analysis/rope_drift.h, docs/rope-drift.md).
#include "anchorctx/analysis/rope_drift.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"

namespace anchorctx::analysis {

void check_policy(PositionPolicy policy) {
  require(policy != PositionPolicy::reset,
          "rope-drift: position policy 'reset' is not measured: a sequence is one document, "
          "which 'reset' always counts from 0, so no shift is applied (use global or anchor)");
}

namespace {

// A mode is a RoPE mode with the precision it runs in (fp32 alone, the others under bf16).
model::RunOptions run_options(std::string_view mode) {
  const std::optional<rope::RopeMode> rope_mode = rope::parse_rope_mode(mode);
  if (!rope_mode) fail("unknown mode '{}' ({})", mode, core::enum_choices_text<rope::RopeMode>());
  model::RunOptions run;
  run.rope_mode = *rope_mode;
  run.precision =
      *rope_mode == rope::RopeMode::fp32 ? model::Precision::fp32 : model::Precision::bf16;
  return run;
}

// One forward's attention inputs: per layer q [T, Hq*D] and k [T, Hkv*D], float32.
struct Capture {
  std::vector<std::vector<float>> q, k;
};

struct Shape {
  std::int64_t T = 0, L = 0, Hq = 0, Hkv = 0, D = 0;
  std::int64_t qd() const { return Hq * D; }
  std::int64_t kvd() const { return Hkv * D; }
};

// exp(x) for x <= 0, branch-free so that the loops vectorise: 2^(x log2 e) split into an
// integer (round to nearest through the 1.5 * 2^23 trick) and a fraction in [-0.5, 0.5]
// (degree-6 polynomial, relative error about 2e-7). exp(-87) and below flush to 0.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f;
  const float fi = (t + 12582912.0f) - 12582912.0f;
  const float f = t - fi;
  float p = 1.5353362e-4f;
  p = p * f + 1.3398874e-3f;
  p = p * f + 9.6184144e-3f;
  p = p * f + 5.5504109e-2f;
  p = p * f + 2.4022650e-1f;
  p = p * f + 6.9314718e-1f;
  p = p * f + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(fi) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x <= -87.0f ? 0.0f : p * scale;
}

// Keys per score block; the transposed keys' length is T rounded up to it (zero padded), so
// every vector loop below runs over whole blocks with no scalar tail.
constexpr std::int64_t kBlock = 64;
// Lane-wise partial sums and maxima: each lane is its own sequential reduction, so the loops
// vectorise without reassociation (-ffast-math) and the reduction order is fixed by the code.
constexpr int kLanes = 16;
// Rows whose per-key contributions are summed in float32 before they are added into double.
constexpr std::int64_t kFlush = 64;

// n rounded up to whole key blocks.
std::int64_t padded(std::int64_t n) {
  return (n + kBlock - 1) / kBlock * kBlock;
}

// Rows scored together against each block of keys: a block (D x kBlock floats, contiguous in
// the transposed layout below) stays in L1 while every row of a group is scored against it,
// so a head's keys come from L2 or L3 once per group rather than once per row; in registers,
// each key vector loaded feeds kRowTile rows' FMAs, kRowTile x KeyTile accumulators: 16 of
// AVX-512's 32 registers at 64 keys (at 32, 8 accumulators only just cover the FMA latency:
// measured 15% slower), all 16 of AVX2's at 32.
constexpr int kRowTile = 4;

// Scores s_j = q_r . k_j of `rows` causal rows of one head (a multiple of kRowTile; q
// pre-scaled; row r has n[r] keys, n ascending within each tile of kRowTile) from keys stored
// in transposed blocks [T/kBlock][D][kBlock], into s[r][j] for j below the tile's largest n
// rounded up to kBlock; keys past a row's n get -1e30 (exp_nonpositive flushes them to exactly
// 0). With a [D][T] layout instead, the D rows of one block sit T floats apart and, for T a
// multiple of 1024, fall in the same few L1 sets. Each score is one float32 chain over d in
// order, so a row's bits do not depend on the rows beside it (a row may be repeated). Also the
// rows' lane-wise maxima into lane_max [rows][kLanes] (saving softmax_row a pass over the row;
// max is exact, so the order does not matter). Compiled per instruction set below.
template <int KeyTile>
[[gnu::always_inline]] inline void score_rows_tiled(const float* const* __restrict q,
                                                    const float* __restrict kt, std::int64_t D,
                                                    const std::int64_t* __restrict n,
                                                    float* const* __restrict s,
                                                    float* __restrict lane_max, std::int64_t rows) {
  static_assert(kBlock % KeyTile == 0 && KeyTile % kLanes == 0);
  // kLanes floats as one GCC vector (one zmm on AVX-512, two ymm on AVX2) for the masking and
  // the maxima, which loops over float arrays left scalar. (The products stay loops over float
  // arrays: as arrays of these vectors, the accumulators went to the stack every step.)
  typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
  constexpr int kVecs = KeyTile / kLanes;
  const std::int64_t blocks_end = padded(*std::max_element(n, n + rows));
  for (std::int64_t j0 = 0; j0 < blocks_end; j0 += kBlock)
    for (std::int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
      if (j0 >= padded(n[r0 + kRowTile - 1])) continue;
      for (int t = 0; t < kBlock; t += KeyTile) {
        float acc[kRowTile][KeyTile] = {};
        for (std::int64_t d = 0; d < D; ++d) {
          const float* k = kt + j0 * D + d * kBlock + t;
#pragma GCC unroll 4
          for (int r = 0; r < kRowTile; ++r) {
            const float x = q[r0 + r][d];
            for (int jj = 0; jj < KeyTile; ++jj)
              acc[r][jj] += x * k[jj];
          }
        }
        for (int r = 0; r < kRowTile; ++r) {
          float* out = s[r0 + r] + j0 + t;
          float* mx = lane_max + (r0 + r) * kLanes;
          Lanes m = Lanes{} - 1e30f;
          if (j0 + t > 0) std::memcpy(&m, mx, sizeof m);
          for (int v = 0; v < kVecs; ++v) {
            Lanes a;
            std::memcpy(&a, acc[r] + v * kLanes, sizeof a);
            const std::int64_t limit = n[r0 + r] - j0 - t - v * kLanes;
            if (limit < kLanes)  // the row's last keys: the rest masked
              for (int l = 0; l < kLanes; ++l)
                a[l] = l < limit ? a[l] : -1e30f;
            std::memcpy(out + v * kLanes, &a, sizeof a);
            m = m < a ? a : m;  // std::max's choice lane by lane
          }
          std::memcpy(mx, &m, sizeof m);
        }
      }
    }
}

// score_rows_tiled per instruction set: 64-key tiles where AVX-512's registers hold them.
__attribute__((target("avx512f"))) void score_rows_avx512(
    const float* const* __restrict q, const float* __restrict kt, std::int64_t D,
    const std::int64_t* __restrict n, float* const* __restrict s, float* __restrict lane_max,
    std::int64_t rows) {
  score_rows_tiled<64>(q, kt, D, n, s, lane_max, rows);
}
__attribute__((target_clones("avx2", "default"))) void score_rows_narrow(
    const float* const* __restrict q, const float* __restrict kt, std::int64_t D,
    const std::int64_t* __restrict n, float* const* __restrict s, float* __restrict lane_max,
    std::int64_t rows) {
  score_rows_tiled<32>(q, kt, D, n, s, lane_max, rows);
}
void score_rows(const float* const* q, const float* kt, std::int64_t D, const std::int64_t* n,
                float* const* s, float* lane_max, std::int64_t rows) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  (avx512 ? score_rows_avx512 : score_rows_narrow)(q, kt, D, n, s, lane_max, rows);
}

// One row's softmax in place over its n keys' scores and their lane-wise maxima mx (from
// score_rows; the entries up to n rounded up to kBlock are read and written, those past n end
// exactly 0). float32, with lane-wise sums in an order fixed by the code, the lanes' sums added
// in double.
__attribute__((target_clones("avx512f", "avx2", "default"))) void softmax_row(
    float* __restrict p, const float* __restrict mx, std::int64_t n) {
  const std::int64_t end = padded(n);
  float m = mx[0];
  for (int l = 1; l < kLanes; ++l)
    m = std::max(m, mx[l]);
  float z[kLanes] = {};
  for (std::int64_t j = 0; j < end; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float e = exp_nonpositive(p[j + l] - m);
      p[j + l] = e;
      z[l] += e;
    }
  double sum = 0.0;
  for (int l = 0; l < kLanes; ++l)
    sum += z[l];
  const float r = static_cast<float>(1.0 / sum);
  for (std::int64_t j = 0; j < end; ++j)
    p[j] *= r;
}

// col[j] += w * |p[j] - ref[j]| for j < nb. Kept apart from the normalisation above: p * r -
// ref in one expression may be contracted to an FMA, which leaves a residue where the two rows
// are equal (D must be exactly 0 for delta1 = delta2).
__attribute__((target_clones("avx512f", "avx2", "default"))) void add_difference(
    const float* __restrict p, const float* __restrict ref, std::int64_t nb, float w,
    float* __restrict col) {
  for (std::int64_t j = 0; j < nb; ++j)
    col[j] += w * std::abs(p[j] - ref[j]);
}

// Keys of one capture transposed per (layer, kv head) to [L][Hkv][T/kBlock][D][kBlock] (T
// rounded up to kBlock), zero padded.
std::vector<float> transpose_keys(const Capture& c, const Shape& s) {
  const std::int64_t stride = padded(s.T);
  std::vector<float> out(static_cast<std::size_t>(s.L * s.kvd() * stride), 0.0f);
#pragma omp parallel for schedule(static)
  for (std::int64_t lg = 0; lg < s.L * s.Hkv; ++lg) {
    const std::int64_t l = lg / s.Hkv, g = lg % s.Hkv;
    float* dst = out.data() + lg * s.D * stride;
    const float* src = c.k[l].data() + g * s.D;
    for (std::int64_t j = 0; j < s.T; ++j)
      for (std::int64_t d = 0; d < s.D; ++d)
        dst[(j / kBlock) * s.D * kBlock + d * kBlock + j % kBlock] = src[j * s.kvd() + d];
  }
  return out;
}

struct Comparison {
  double D = 0.0;
  double first_key_attention = 0.0;  // mean over layers, heads and rows of A_i0, reference run
  std::vector<double> per_token;     // [T]
};

// Rows per block: the reference rows of a block are computed once and compared with every run
// of the group; each run's keys are read once per score group of the block's rows (about D / 2
// rows, compare_group). Divides kFlush.
constexpr std::int64_t kRows = 32;
static_assert(kFlush % kRows == 0 && kRows % kRowTile == 0);

// Pre-softmax logits against the first key: sum_{l,h} |s_i0(a) - s_i0(b)| per row i, in double,
// rows in order and layers and heads in order.
std::vector<double> first_key_logit_rows(const Capture& a, const Capture& b, const Shape& s) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  std::vector<double> out(static_cast<std::size_t>(s.T), 0.0);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < s.T; ++i) {
    double sum = 0.0;
    for (std::int64_t l = 0; l < s.L; ++l)
      for (std::int64_t h = 0; h < s.Hq; ++h) {
        const std::int64_t g = h / (s.Hq / s.Hkv);
        double da = 0.0, db = 0.0;
        for (std::int64_t d = 0; d < s.D; ++d) {
          da += static_cast<double>(a.q[l][i * s.qd() + h * s.D + d]) * a.k[l][g * s.D + d];
          db += static_cast<double>(b.q[l][i * s.qd() + h * s.D + d]) * b.k[l][g * s.D + d];
        }
        sum += std::abs(da - db) * static_cast<float>(scale);
      }
    out[i] = sum;
  }
  return out;
}

// Compares each run of a group with the reference run `base` (each with its transposed keys;
// the reference's are made once and shared by every group). Work items are (layer, head, row
// chunk), chunk boundaries fixed by the shape alone, and every run's per-key sums are added in
// row order and reduced in item order: the same bits for any thread count and any grouping.
std::vector<Comparison> compare_group(const Capture& base, const std::vector<float>& kt_base,
                                      const std::vector<Capture>& runs,
                                      const std::vector<std::vector<float>>& kt_runs,
                                      const Shape& s) {
  const std::size_t G = runs.size();
  const std::int64_t heads = s.L * s.Hq;
  const std::int64_t stride = padded(s.T);
  const std::int64_t chunks = std::max<std::int64_t>(1, (32 + heads - 1) / heads);
  std::vector<std::int64_t> bounds(static_cast<std::size_t>(chunks + 1));
  for (std::int64_t c = 0; c <= chunks; ++c)  // equal causal work per chunk: rows ~ sqrt
    bounds[c] = std::min<std::int64_t>(
        s.T, static_cast<std::int64_t>(std::llround(static_cast<double>(s.T) *
                                                    std::sqrt(static_cast<double>(c) / chunks))));
  bounds[chunks] = s.T;
  const std::int64_t items = heads * chunks;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.D)));
  // Rows scored per pass over a run's keys: a pass reads 4 D bytes per key from L2 or memory
  // and leaves its rows' scores (4 bytes per key and row) to be read back for the softmax,
  // from L2 once the group's rows outgrow L1. About D / 2 rows balance the two (whole tiles,
  // at most a block): 32 at head_dim 64, one tile at stories260K's 8.
  const std::int64_t score_group =
      std::clamp<std::int64_t>(s.D / 2 / kRowTile * kRowTile, kRowTile, kRows);

  std::vector<double> item_sink(static_cast<std::size_t>(items), 0.0);
  // [item][run]: per-key sums (double) of the item's rows.
  std::vector<std::vector<double>> item_col(static_cast<std::size_t>(items) * G);
#pragma omp parallel
  {
    std::vector<float> ref(static_cast<std::size_t>(kRows * stride));
    std::vector<float> rows_p(static_cast<std::size_t>(kRows * stride));  // a run's rows
    std::vector<float> spare(stride);  // the discarded scores of a tile's repeated rows
    std::vector<float> colf(G * static_cast<std::size_t>(stride), 0.0f);
    std::vector<float> qs(static_cast<std::size_t>(kRows * s.D));
    std::vector<const float*> q(kRows);
    std::vector<float*> out(kRows);
    std::vector<std::int64_t> n(kRows);
    std::vector<float> lane_max(static_cast<std::size_t>(kRows * kLanes));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t it = 0; it < items; ++it) {
      const std::int64_t lh = it / chunks, c = it % chunks;
      const std::int64_t l = lh / s.Hq, h = lh % s.Hq;
      const std::int64_t kv_offset = (l * s.Hkv + h / (s.Hq / s.Hkv)) * s.D * stride;
      // Softmax of rows i0 .. i0 + rows - 1 of one run into dst + r * stride; the last row is
      // repeated up to a whole tile, its scores discarded.
      auto softmax_rows = [&](const Capture& run, const float* kt, std::int64_t i0,
                              std::int64_t rows, float* dst_rows) {
        const std::int64_t tiled = (rows + kRowTile - 1) / kRowTile * kRowTile;
        for (std::int64_t t = 0; t < tiled; ++t) {
          const std::int64_t r = std::min(t, rows - 1);
          const float* src = run.q[l].data() + (i0 + r) * s.qd() + h * s.D;
          float* dst = qs.data() + t * s.D;
          for (std::int64_t d = 0; d < s.D; ++d)
            dst[d] = src[d] * scale;
          q[t] = dst;
          n[t] = i0 + r + 1;
          out[t] = t < rows ? dst_rows + t * stride : spare.data();
        }
        for (std::int64_t g0 = 0; g0 < tiled; g0 += score_group) {
          const std::int64_t g1 = std::min(tiled, g0 + score_group);
          score_rows(q.data() + g0, kt, s.D, n.data() + g0, out.data() + g0,
                     lane_max.data() + g0 * kLanes, g1 - g0);
          for (std::int64_t t = g0; t < std::min(g1, rows); ++t)
            softmax_row(out[t], lane_max.data() + t * kLanes, n[t]);
        }
      };
      const std::size_t row_end = static_cast<std::size_t>(bounds[c + 1]);
      for (std::size_t g = 0; g < G; ++g)
        item_col[it * G + g].assign(row_end, 0.0);
      std::fill(colf.begin(), colf.end(), 0.0f);
      // The per-key sums run in float32 over kFlush rows, then go into double.
      auto flush = [&] {
        for (std::size_t g = 0; g < G; ++g) {
          std::vector<double>& col = item_col[it * G + g];
          float* cf = colf.data() + g * stride;
          for (std::size_t j = 0; j < row_end; ++j) {
            col[j] += cf[j];
            cf[j] = 0.0f;
          }
        }
      };
      for (std::int64_t i0 = bounds[c]; i0 < bounds[c + 1]; i0 += kRows) {
        const std::int64_t rows = std::min(kRows, bounds[c + 1] - i0);
        softmax_rows(base, kt_base.data() + kv_offset, i0, rows, ref.data());
        for (std::int64_t r = 0; r < rows; ++r)
          item_sink[it] += ref[r * stride];  // the reference run's attention on the first key
        for (std::size_t g = 0; g < G; ++g) {
          softmax_rows(runs[g], kt_runs[g].data() + kv_offset, i0, rows, rows_p.data());
          float* col = colf.data() + g * stride;
          for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t n_r = i0 + r + 1;
            add_difference(rows_p.data() + r * stride, ref.data() + r * stride, padded(n_r),
                           static_cast<float>(1.0 / static_cast<double>(n_r)), col);
          }
        }
        if ((i0 + rows - bounds[c]) % kFlush == 0) flush();
      }
      flush();
    }
  }
  std::vector<Comparison> out(G);
  for (std::size_t g = 0; g < G; ++g) {
    Comparison& cmp = out[g];
    cmp.per_token.assign(static_cast<std::size_t>(s.T), 0.0);
    for (std::int64_t it = 0; it < items; ++it) {
      const auto& col = item_col[it * G + g];
      double total = 0.0;  // D is the sum of the per-key contributions: the two agree
      for (std::size_t j = 0; j < col.size(); ++j) {
        total += col[j];
        cmp.per_token[j] += col[j];
      }
      cmp.D += total;
      cmp.first_key_attention += item_sink[it] / static_cast<double>(heads * s.T);
    }
  }
  return out;
}

std::vector<std::int32_t> positions_for(std::int64_t T, std::int64_t delta, PositionPolicy policy) {
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i)
    pos[i] = static_cast<std::int32_t>(i + delta);
  if (policy == PositionPolicy::anchor) pos[0] = 0;
  return pos;
}

}  // namespace

void check_mode_name(std::string_view name) {
  (void)run_options(name);
}

std::vector<std::int64_t> paper_deltas() {
  return {0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 18, 20, 22, 50, 100, 200, 500, 1000, 2000};
}

RopeDriftReport measure_rope_drift(const model::LlamaConfig& config, std::span<const float> params,
                                   const std::vector<std::vector<std::int32_t>>& sequences,
                                   const RopeDriftOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t T = options.seq_len;
  require(T >= 2, "rope-drift: the sequence length must be at least 2 (got {})", T);
  require(T <= (std::int64_t{1} << 24), "rope-drift: sequence length {} is too large", T);
  require(!sequences.empty(), "rope-drift: no sequences to measure");
  require(T <= config.max_position_embeddings || options.allow_long,
          "rope-drift: sequence length {} is beyond the model's max_position_embeddings {} "
          "(pass --allow-long to measure there anyway)",
          T, config.max_position_embeddings);
  require(options.delta2 >= 0, "rope-drift: delta2 must be >= 0 (got {})", options.delta2);
  require(!options.deltas.empty(), "rope-drift: the delta1 list is empty");
  require(!options.modes.empty() && !options.policies.empty(),
          "rope-drift: at least one mode and one policy are needed");
  std::int64_t max_delta = options.delta2;
  for (const std::int64_t d : options.deltas) {
    require(d >= 0, "rope-drift: delta1 must be >= 0 (got {})", d);
    max_delta = std::max(max_delta, d);
  }
  // Written without T + max_delta, which overflows int64 for deltas near INT64_MAX (T is at
  // most 2^24 here, so the subtraction cannot).
  require(max_delta < (std::int64_t{1} << 31) - T,
          "rope-drift: positions overflow int32 (sequence length {} plus the largest delta {} "
          "reaches 2^31)",
          T, max_delta);
  require(std::find(options.deltas.begin(), options.deltas.end(), options.logit_delta1) !=
              options.deltas.end(),
          "rope-drift: the D_logit delta1 {} is not in the delta1 list", options.logit_delta1);
  for (const PositionPolicy policy : options.policies)
    check_policy(policy);
  for (const auto& mode : options.modes)
    check_mode_name(mode);
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    require(static_cast<std::int64_t>(sequences[s].size()) >= T,
            "rope-drift: sequence {} has {} tokens, fewer than the requested length {}", s,
            sequences[s].size(), T);
    for (std::int64_t i = 0; i < T; ++i)
      require(sequences[s][i] >= 0 && sequences[s][i] < config.vocab_size,
              "rope-drift: sequence {} token {} has id {}, outside the vocabulary (size {})", s, i,
              sequences[s][i], config.vocab_size);
  }

  Shape shape;
  shape.T = T;
  shape.L = config.num_hidden_layers;
  shape.Hq = config.num_attention_heads;
  shape.Hkv = config.num_key_value_heads;
  shape.D = config.head_dim > 0 ? config.head_dim : config.hidden_size / config.num_attention_heads;

  // The plan: one sequence, causal (one unpacked sequence: the anchor mask is the same).
  const std::vector<std::int32_t> cu{0, static_cast<std::int32_t>(T)}, cu_docs{0, 1}, starts{0},
      anchors{0};
  const attention::BlockPlan plan = attention::BlockPlan::build(
      attention::AttentionLayout::from_arrays(cu, cu_docs, starts, anchors),
      attention::MaskKind::causal);
  const std::vector<std::int32_t> targets(static_cast<std::size_t>(T), -1);

  std::vector<std::int64_t> lengths;
  for (std::int64_t n = 64; n < T; n *= 2)
    lengths.push_back(n);
  lengths.push_back(T);

  RopeDriftReport report;
  report.seq_len = T;
  report.sequences = static_cast<std::int64_t>(sequences.size());
  report.layers = shape.L;
  report.heads = shape.Hq;
  report.kv_heads = shape.Hkv;
  report.head_dim = shape.D;
  const double inv_n = 1.0 / static_cast<double>(sequences.size());
  const std::int64_t total = static_cast<std::int64_t>(
      options.modes.size() * options.policies.size() * sequences.size() * options.deltas.size());
  std::int64_t done = 0;
  // delta1 runs compared per group: as many as fit options.group_bytes (q, k and transposed k
  // of each run), at least one.
  const std::int64_t run_bytes =
      shape.L * (shape.T * (shape.qd() + shape.kvd()) + shape.kvd() * padded(shape.T)) * 4;
  const std::size_t group = static_cast<std::size_t>(
      std::clamp<std::int64_t>(options.group_bytes / std::max<std::int64_t>(run_bytes, 1), 1,
                               static_cast<std::int64_t>(options.deltas.size())));

  for (const std::string& mode : options.modes) {
    model::LlamaTrainModel net(config, run_options(mode));
    require(params.size() == net.params().size(),
            "rope-drift: {} parameters given, the config needs {}", params.size(),
            net.params().size());
    std::copy(params.begin(), params.end(), net.params().begin());

    for (const PositionPolicy policy : options.policies) {
      const std::size_t first = report.results.size();
      for (const std::int64_t d1 : options.deltas) {
        DriftResult r;
        r.mode = mode;
        r.policy = policy;
        r.delta1 = d1;
        r.delta2 = options.delta2;
        r.per_token.assign(static_cast<std::size_t>(T), 0.0);
        report.results.push_back(std::move(r));
      }
      std::vector<double> logit_rows(static_cast<std::size_t>(T), 0.0);
      double first_key_attention = 0.0;

      for (std::size_t sq = 0; sq < sequences.size(); ++sq) {
        const std::span<const std::int32_t> ids(sequences[sq].data(), static_cast<std::size_t>(T));
        auto run = [&](std::int64_t delta) {
          const std::vector<std::int32_t> pos = positions_for(T, delta, policy);
          Capture cap;
          cap.q.resize(static_cast<std::size_t>(shape.L));
          cap.k.resize(static_cast<std::size_t>(shape.L));
          const model::TrainBatch batch{ids, targets, pos, &plan};
          net.attention_inputs(batch,
                               [&](int layer, std::span<const float> q, std::span<const float> k) {
                                 cap.q[layer].assign(q.begin(), q.end());
                                 cap.k[layer].assign(k.begin(), k.end());
                               });
          if (options.perturb)
            for (std::int64_t l = 0; l < shape.L; ++l)
              options.perturb(static_cast<int>(l), pos, cap.q[l], cap.k[l]);
          return cap;
        };
        const Capture base = run(options.delta2);
        const std::vector<float> kt_base = transpose_keys(base, shape);
        // The delta1 runs go in groups whose captures fit the memory budget.
        for (std::size_t g0 = 0; g0 < options.deltas.size(); g0 += group) {
          const std::size_t g1 = std::min(options.deltas.size(), g0 + group);
          std::vector<Capture> runs;
          std::vector<std::vector<float>> kt_runs;
          for (std::size_t di = g0; di < g1; ++di) {
            if (options.progress)
              options.progress(
                  done, total,
                  fmt::format("{} {} sequence {}/{} delta1 {}", mode, to_string(policy), sq + 1,
                              sequences.size(), options.deltas[di]));
            runs.push_back(run(options.deltas[di]));
            kt_runs.push_back(transpose_keys(runs.back(), shape));
          }
          const std::vector<Comparison> cmp = compare_group(base, kt_base, runs, kt_runs, shape);
          for (std::size_t di = g0; di < g1; ++di) {
            const Comparison& c = cmp[di - g0];
            DriftResult& r = report.results[first + di];
            r.D += c.D * inv_n;
            for (std::int64_t j = 0; j < T; ++j)
              r.per_token[j] += c.per_token[j] * inv_n;
            r.D_excl_first += (c.D - c.per_token[0]) * inv_n;
            if (di == 0) first_key_attention += c.first_key_attention * inv_n;
            if (options.deltas[di] == options.logit_delta1) {
              const std::vector<double> rows = first_key_logit_rows(runs[di - g0], base, shape);
              for (std::int64_t i = 0; i < T; ++i)
                logit_rows[i] += rows[i] * inv_n;
            }
            ++done;
          }
        }
      }

      // D_logit for each prefix length.
      double prefix = 0.0;
      std::size_t li = 0;
      for (std::int64_t i = 0; i < T && li < lengths.size(); ++i) {
        prefix += logit_rows[i];
        if (i + 1 == lengths[li]) {
          LogitGrowth g;
          g.mode = mode;
          g.policy = policy;
          g.delta1 = options.logit_delta1;
          g.delta2 = options.delta2;
          g.length = lengths[li];
          g.D_logit = prefix / static_cast<double>(lengths[li]);
          report.logit_growth.push_back(g);
          ++li;
        }
      }

      // The first token's share of the per-token difference, over all delta1.
      std::vector<double> summed(static_cast<std::size_t>(T), 0.0);
      double total = 0.0;
      for (std::size_t r = first; r < report.results.size(); ++r) {
        for (std::int64_t j = 0; j < T; ++j)
          summed[j] += report.results[r].per_token[j];
        total += report.results[r].D;
      }
      FirstTokenShare share;
      share.mode = mode;
      share.policy = policy;
      share.share = total > 0.0 ? summed[0] / total : 0.0;
      share.rank = 1;
      for (std::int64_t j = 1; j < T; ++j) {
        if (summed[j] > summed[0]) ++share.rank;
        if (share.largest_other_token == 0 || summed[j] > summed[share.largest_other_token])
          share.largest_other_token = j;
      }
      share.largest_other_share = total > 0.0 ? summed[share.largest_other_token] / total : 0.0;
      share.first_key_attention = first_key_attention;
      report.first_token_share.push_back(share);
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::vector<std::vector<std::int32_t>> make_sequences(
    const std::vector<std::vector<std::int32_t>>& documents, std::int64_t count,
    std::int64_t seq_len, std::int32_t bos, std::int32_t eos) {
  require(count >= 1 && seq_len >= 2, "rope-drift: need at least one sequence of 2 tokens");
  std::vector<std::vector<std::int32_t>> out;
  std::vector<std::int32_t> current;
  auto start_sequence = [&] {
    current.clear();
    if (bos >= 0) current.push_back(bos);
  };
  start_sequence();
  for (const auto& doc : documents) {
    std::size_t pos = 0;
    while (pos < doc.size() && static_cast<std::int64_t>(out.size()) < count) {
      const std::size_t take = std::min<std::size_t>(
          doc.size() - pos, static_cast<std::size_t>(seq_len) - current.size());
      current.insert(current.end(), doc.begin() + static_cast<std::ptrdiff_t>(pos),
                     doc.begin() + static_cast<std::ptrdiff_t>(pos + take));
      pos += take;
      if (static_cast<std::int64_t>(current.size()) == seq_len) {
        out.push_back(current);
        start_sequence();
      }
    }
    if (static_cast<std::int64_t>(out.size()) == count) return out;
    if (eos >= 0 && !doc.empty() && current.size() > (bos >= 0 ? 1u : 0u)) {
      current.push_back(eos);
      if (static_cast<std::int64_t>(current.size()) == seq_len) {
        out.push_back(current);
        start_sequence();
      }
    }
  }
  require(static_cast<std::int64_t>(out.size()) >= count,
          "rope-drift: the input holds {} sequences of {} tokens, {} were asked for (a shorter "
          "--seq-len, fewer --sequences or a longer input)",
          out.size(), seq_len, count);
  return out;
}

}  // namespace anchorctx::analysis
