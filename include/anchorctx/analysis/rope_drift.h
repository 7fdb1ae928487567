// rope-drift: how far attention moves when every position id is shifted by the same amount
// (../shared/PAPER.md §1; docs/rope-drift.md). In exact arithmetic RoPE attention depends only
// on position differences, so shifting all positions by delta1 or delta2 gives the same
// attention; in bf16 it does not.
//
// For each sequence, mode and position policy the model's forward runs once per shift, each
// layer's q and k after RoPE are captured (LlamaTrainModel's attention-inputs hook), and the
// softmaxed causal attention of every layer and head is recomputed row block by row block
// (never a T x T matrix) for the two shifts and compared:
//
//   D(d1, d2) = sum_{l, h} sum_i w_i sum_{j <= i} |A_ij(d1) - A_ij(d2)|,  w_i = 1 / (i + 1)
//
// (row i, 0-based, sees i + 1 keys: the paper's weights "1/L ... 1" read as the inverse of each
// causal row's length). Also the per-key contribution c_j = sum_{l,h,i} w_i |dA_ij| (so
// sum_j c_j = D), D_excl_first = D - c_0 (the first token excluded as a key; as a query it
// only sees itself, so its row is in c_0 too), and D_logit on the first key: the mean over rows
// i < n of sum_{l,h} |s_i0(d1) - s_i0(d2)| on the pre-softmax logits s_ij = scale * q_i . k_j,
// for prefix lengths n = 64, 128, ... (a causal model's first n rows are those of a length-n
// run, so one run gives every length).
//
// Policies: `global` shifts every position (i + delta); `anchor` keeps the first token at
// position 0 (the AnchorAttention anchor, paper §2) and shifts the others (i + delta for i > 0).
// Under `anchor` the distance between a token and the first one changes with delta, so even
// exact arithmetic moves the first key's scores: compare anchor's bf16 D with its fp32 D.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "anchorctx/model/config.h"
#include "anchorctx/rope/positions.h"

namespace anchorctx::analysis {

// The position policies are rope's (rope/positions.h); rope-drift measures `global` and `anchor`.
using rope::PositionPolicy;
// Throws anchorctx::Error for `reset`: a measured sequence is one document, which `reset`
// always counts from 0, so there is no shift to measure.
void check_policy(PositionPolicy policy);

// A precision mode: "fp32" (fp32, rope fp32), "hf_bf16" (bf16, rope hf_bf16), "exact" (bf16,
// rope exact). Throws anchorctx::Error for an unknown name.
void check_mode_name(std::string_view name);

// The paper's delta1 list: 0, 2, ..., 14, 15, 17, 18, 20, 22, 50, 100, 200, 500, 1000, 2000.
std::vector<std::int64_t> paper_deltas();

struct RopeDriftOptions {
  std::int64_t seq_len = 4096;  // T: every sequence is clipped to T tokens (error if shorter)
  std::int64_t delta2 = 16;
  std::vector<std::int64_t> deltas = paper_deltas();  // delta1 values
  std::vector<std::string> modes{"fp32", "hf_bf16", "exact"};
  std::vector<PositionPolicy> policies{PositionPolicy::global, PositionPolicy::anchor};
  // D_logit is reported for delta1 = logit_delta1 (must be one of `deltas`) at lengths 64,
  // 128, 256, ... (doubling) up to T, T itself always included.
  std::int64_t logit_delta1 = 0;
  // T beyond the config's max_position_embeddings is refused unless set.
  bool allow_long = false;
  // Memory for the captured runs compared together with one pass over the reference rows (q, k
  // and transposed k of each delta1 run: layers * T * (q + 2 k widths) * 4 bytes); at least one
  // run is always held. Results do not depend on it.
  std::int64_t group_bytes = std::int64_t{1} << 30;
  // Test hook: called on each captured layer's q [T, Hq*D] and k [T, Hkv*D] (after RoPE) with
  // the run's position ids, before the comparison; lets a test plant a position-dependent
  // error. Must be deterministic.
  std::function<void(int layer, std::span<const std::int32_t> positions, std::span<float> q,
                     std::span<float> k)>
      perturb;
  // Called before each comparison with how many are done, how many there are in all, and
  // what comes next (may be empty).
  std::function<void(std::int64_t done, std::int64_t total, const std::string& next)> progress;
};

struct DriftResult {
  std::string mode;
  PositionPolicy policy = PositionPolicy::global;
  std::int64_t delta1 = 0, delta2 = 0;
  double D = 0.0, D_excl_first = 0.0;  // means over the sequences
  std::vector<double> per_token;       // c_j, mean over the sequences [T]
};

struct LogitGrowth {
  std::string mode;
  PositionPolicy policy = PositionPolicy::global;
  std::int64_t delta1 = 0, delta2 = 0, length = 0;
  double D_logit = 0.0;  // mean over the sequences
};

struct FirstTokenShare {
  std::string mode;
  PositionPolicy policy = PositionPolicy::global;
  // sum over delta1 of c_0 / sum over delta1 of D (0 when D is 0 everywhere).
  double share = 0.0;
  // The rank of c_0 among all c_j (1 = largest), summed over delta1.
  std::int64_t rank = 0;
  std::int64_t largest_other_token = 0;  // j > 0 with the largest summed c_j
  double largest_other_share = 0.0;
  // How much attention the first key draws in the reference (delta2) run: the mean over
  // layers, heads and rows of A_i0. An "attention sink" shows as a value far above the mean
  // 1/(i+1) of a uniform row; where it is weak, errors on the first key weigh little.
  double first_key_attention = 0.0;
};

struct RopeDriftReport {
  std::int64_t seq_len = 0, sequences = 0;
  std::int64_t layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
  std::vector<DriftResult> results;  // per mode, policy, delta1 (in the options' order)
  std::vector<LogitGrowth> logit_growth;
  std::vector<FirstTokenShare> first_token_share;
  double seconds = 0.0;
};

// Runs the whole measurement. `params` in the ParameterLayout of `config`; each sequence holds
// at least options.seq_len token ids (< vocab_size). Deterministic for any thread count.
// Throws anchorctx::Error on bad input (no sequences, a short sequence, an id out of range, T
// beyond max_position_embeddings without allow_long, an unknown mode, bad deltas).
RopeDriftReport measure_rope_drift(const model::LlamaConfig& config, std::span<const float> params,
                                   const std::vector<std::vector<std::int32_t>>& sequences,
                                   const RopeDriftOptions& options);

// The `--json` object: seq_len, sequences, model shape, results [{mode, policy, delta1, delta2,
// D, D_excl_first}], logit_growth [{mode, policy, delta1, delta2, T, D_logit}],
// first_token_share [{mode, policy, share, rank, largest_other_token, largest_other_share,
// first_key_attention}],
// seconds. Per-token vectors are not included (see write_report).
nlohmann::json to_json(const RopeDriftReport& report);

// The report folder: report.json (to_json), d_vs_delta.svg, per_token.svg, d_logit.svg and
// report.md (findings in words chosen from the numbers). `title` names the model.
void write_report(const RopeDriftReport& report, const std::string& title, const std::string& dir);

// Sequences of exactly `seq_len` ids: [bos (if given; rope-drift passes pack's anchor: the
// tokenizer's bos, else its eos)] then the documents' ids concatenated (eos between documents
// when the tokenizer has one), cut into consecutive sequences. Throws anchorctx::Error when the
// documents do not fill `count` sequences.
std::vector<std::vector<std::int32_t>> make_sequences(
    const std::vector<std::vector<std::int32_t>>& documents, std::int64_t count,
    std::int64_t seq_len, std::int32_t bos, std::int32_t eos);  // bos/eos: -1 for none

}  // namespace anchorctx::analysis
