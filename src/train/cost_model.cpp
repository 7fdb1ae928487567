// The cost model of a distributed step, formula by formula. Shapes: T tokens per window, S
// sequence-parallel ranks, G ranks in all, L layers, H hidden, I intermediate, Hq / Hkv heads,
// D head_dim, V vocabulary, P parameters.
#include "anchorctx/train/cost_model.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/sequence_parallel.h"

namespace anchorctx::train {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

double element_bytes(model::Precision precision) {
  return precision == model::Precision::bf16 ? 2.0 : 4.0;
}

// Seconds to send `bytes` from one rank to the others of a group of `ranks` consecutive ranks
// that each hold an equal part: the part for peers in the rank's node crosses the intra-node
// links, the part for other nodes the inter-node ones, both at once.
double exchange_seconds(double bytes_per_peer_total, int ranks, const HardwareProfile& hw) {
  if (ranks <= 1 || bytes_per_peer_total <= 0) return 0.0;
  const int in_node = std::min(ranks, hw.devices_per_node);
  const double intra = bytes_per_peer_total * (in_node - 1) / ranks;
  const double inter = bytes_per_peer_total * (ranks - in_node) / ranks;
  return std::max(intra / (hw.intra_node_gbs * 1e9),
                  inter > 0 ? inter / (hw.inter_node_gbs * 1e9) : 0.0);
}

// The bandwidth a ring over `ranks` consecutive ranks runs at: its slowest link.
double ring_gbs(int ranks, const HardwareProfile& hw) {
  return ranks <= hw.devices_per_node ? hw.intra_node_gbs : hw.inter_node_gbs;
}

}  // namespace

void check_setup(const PlanSetup& s) {
  const model::LlamaConfig& c = s.config;
  if (s.gpus < 1) fail("--gpus {} must be at least 1", s.gpus);
  if (s.sp < 1) fail("--sp {} must be at least 1", s.sp);
  if (s.grad_accum < 1) fail("--grad-accum {} must be at least 1", s.grad_accum);
  if (s.gpus % s.sp != 0)
    fail("--gpus {} is not divisible by --sp {}: the ranks form G / S data-parallel groups of S",
         s.gpus, s.sp);
  const std::int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  // train runs any split (docs/DISTRIBUTED_SP.md: uneven head ranges, ranks without heads or
  // tokens); the cost model prices the even ones, where every rank does the same work.
  if (s.sp > hq)
    fail(
        "--sp {} exceeds the model's {} attention heads: some ranks would have no heads; train "
        "runs that, but plan models even splits only, so it stops at S = {}",
        s.sp, hq, hq);
  if (hq % s.sp != 0)
    fail(
        "--sp {} does not divide the model's {} attention heads: train runs uneven head ranges, "
        "but plan models even splits only",
        s.sp, hq);
  if (hkv % s.sp != 0 && s.sp % hkv != 0)
    fail(
        "--sp {} and the model's {} kv heads: plan models kv heads divisible by S, or S divisible "
        "by kv heads (each kv head replicated to S / kv heads ranks); train also runs the others",
        s.sp, hkv);
  if (s.seq_len < s.sp)
    fail("--seq-len {} is shorter than --sp {}: plan models a token shard on every rank", s.seq_len,
         s.sp);
  if (s.seq_len > std::int64_t{1} << 30)
    fail("--seq-len {} is beyond the 2^30 tokens a window may hold", s.seq_len);
}

attention::AttentionLayout sample_windows(const data::DocLengthSpec& docs, int count,
                                          std::int32_t seq_len, std::uint64_t seed) {
  return attention::AttentionLayout::from_document_lengths(
      data::generate_doc_lengths(docs, count, seq_len, seed, 1), 1);
}

AttentionWork attention_work(const attention::AttentionLayout& windows, attention::Mask mask,
                             int tile_size) {
  require(windows.num_sequences() > 0, "attention work: no window sampled");
  const attention::BlockPlan plan = attention::BlockPlan::build(windows, mask, tile_size);
  AttentionWork w;
  w.windows = windows.num_sequences();
  w.tile_size = tile_size;
  w.visited_tiles = plan.visited_pairs();
  w.partial_tiles = plan.partial_pairs();
  double computed = 0.0, causal = 0.0;
  for (int q = 0; q < plan.num_q_tiles(); ++q)
    for (const attention::TileRef& ref : plan.kv_tiles_of(q))
      computed += static_cast<double>(plan.q_tile(q).size()) * plan.kv_tile(ref.tile).size();
  for (int b = 0; b < windows.num_sequences(); ++b) {
    const double n = windows.seq_len(b);
    causal += n * (n + 1) / 2;
  }
  const double n = w.windows;
  w.visible_pairs = static_cast<double>(windows.visible_pairs(mask)) / n;
  w.computed_pairs = computed / n;
  w.causal_pairs = causal / n;
  return w;
}

PlanEstimate estimate_plan(const PlanSetup& s, const AttentionWork& work,
                           const HardwareProfile& hw) {
  check_setup(s);
  const model::LlamaConfig& c = s.config;
  PlanEstimate e;
  const double L = static_cast<double>(c.num_hidden_layers);
  const double D = static_cast<double>(c.resolved_head_dim());
  const std::int64_t hq = c.num_attention_heads, hkv = c.num_key_value_heads;
  const int S = s.sp, G = s.gpus;
  const double windows = s.grad_accum;  // per SP group and step
  // The busiest rank's tokens, cut as training cuts them: whole GEMM row blocks per rank
  // (model::plan_sequence_shards), not T / S.
  {
    const model::SequenceShards shards =
        model::plan_sequence_shards(s.seq_len, S, 0, static_cast<int>(hq), static_cast<int>(hkv));
    for (int r = 0; r < S; ++r)
      e.tokens_per_rank = std::max(e.tokens_per_rank, shards.tokens_of(r));
  }
  e.parameters = model::parameter_count(c);
  const double tokens = static_cast<double>(e.tokens_per_rank);

  // FLOPs. Matrix products: 2 per weight and token forward, 4 backward (input and weight
  // gradients), on the rank's T / S tokens. Attention: each rank runs Hq / S heads over the
  // whole window; 2 products forward (S = QK^T, O = PV), 5 backward (S again, dV, dP, dK, dQ),
  // 2 x pairs x D each. Checkpointing recomputes each layer's forward (not the LM head).
  const double heads_here = static_cast<double>(hq) / S;
  const double mat = model::matrix_parameter_count(c);
  const double lm_head = static_cast<double>(c.hidden_size) * static_cast<double>(c.vocab_size);
  e.flops.matmul = 6.0 * mat * tokens * windows;
  e.flops.attention = 14.0 * work.visible_pairs * D * heads_here * L * windows;
  e.flops.attention_computed = 14.0 * work.computed_pairs * D * heads_here * L * windows;
  if (s.checkpointing)
    e.flops.recompute =
        (2.0 * (mat - lm_head) * tokens + 4.0 * work.computed_pairs * D * heads_here * L) * windows;

  // Memory: the flat float32 parameter buffer, its gradient twin, AdamW's two moments (sharded
  // over the G ranks the gradients are summed over with ZeRO-1; the full gradient buffer stays,
  // the model writes into it), and the model's own buffer list at the rank's token count (the
  // token-sharded buffers shrink by S; under Ulysses q, k, v, o and lse hold T x Hq / S rows
  // instead of T / S x Hq, the same count). Plus the all-to-all's send and receive buffers of
  // one layer's q, k, v (float32, k and v widened by the replication), an estimate.
  const auto flat = static_cast<std::int64_t>(model::ParameterLayout::for_config(c).total());
  e.memory.parameters = 4 * flat;
  e.memory.gradients = 4 * flat;
  e.memory.optimizer = s.shard_optimizer ? 8 * ceil_div(flat, G) : 8 * flat;
  model::RunOptions run;
  run.precision = s.precision;
  run.rope_mode = model::default_rope_mode(s.precision);
  run.checkpointing = s.checkpointing;
  run.loss_chunk = s.loss_chunk;
  for (const model::StepBuffer& b :
       model::LlamaTrainModel::step_buffers(c, run, e.tokens_per_rank)) {
    e.memory.step_buffers += b.bytes();
    if (b.name == "bf16_params") e.memory.weight_copy += b.bytes();
  }
  const int replication = S > hkv ? static_cast<int>(S / hkv) : 1;
  const double kv_width = static_cast<double>(std::max<std::int64_t>(hkv, S)) * D;
  const double qkv_width = static_cast<double>(c.q_dim()) + 2 * kv_width;
  if (S > 1) e.memory.ulysses_staging = static_cast<std::int64_t>(2 * 4 * tokens * qkv_width);

  // Communication. Ulysses, per layer and window: each rank holds [T/S, width] of q, k, v and
  // keeps 1/S of it; (S - 1)/S leaves. k and v leave replicated (each kv head to S / Hkv ranks
  // when S > Hkv). Forward: q, k, v in, the output [T, Hq/S, D] back; backward: the output's
  // gradient in, dq, dk, dv back (replicas summed). Checkpointing repeats the forward's.
  const double el = element_bytes(s.comm_precision);
  PlanCommunication& m = e.communication;
  m.kv_replication = replication;
  const double leave = S > 1 ? static_cast<double>(S - 1) / S : 0.0;
  const double fwd_width = qkv_width + static_cast<double>(c.q_dim());
  m.a2a_forward_per_layer = leave * tokens * fwd_width * el;
  m.a2a_backward_per_layer = m.a2a_forward_per_layer;
  m.a2a_step = (m.a2a_forward_per_layer * (s.checkpointing ? 2 : 1) + m.a2a_backward_per_layer) *
               L * windows;
  // Gradients: every rank's are partial sums (other windows under DP, other tokens under SP),
  // so they are summed over all G ranks, once per step. Ring all-reduce: 2 (N-1)/N x bytes
  // sent per rank; ZeRO-1 splits it into a reduce-scatter of the gradients and an all-gather
  // of the updated parameters, (N-1)/N each.
  m.gradient_ranks = G;
  const double grad_bytes = static_cast<double>(e.parameters) * el;
  const double share = G > 1 ? static_cast<double>(G - 1) / G : 0.0;
  if (s.shard_optimizer) {
    m.zero_reduce_scatter = share * grad_bytes;
    m.zero_all_gather = share * grad_bytes;
  } else {
    m.gradient_all_reduce = 2 * share * grad_bytes;
  }

  // Time, nothing overlapped.
  const double peak = hw.peak_tflops(s.precision) * 1e12;
  e.time.matmul = e.flops.matmul / (peak * hw.gemm_efficiency);
  e.time.attention = e.flops.attention_computed / (peak * hw.attention_efficiency);
  if (s.checkpointing) {
    const double recompute_attention = 4.0 * work.computed_pairs * D * heads_here * L * windows;
    e.time.recompute = (e.flops.recompute - recompute_attention) / (peak * hw.gemm_efficiency) +
                       recompute_attention / (peak * hw.attention_efficiency);
  }
  // The all-to-all payload per rank is the whole [T/S, width] block; exchange_seconds sends
  // the (S-1)/S of it that leaves.
  const double a2a_payload_step =
      (tokens * fwd_width * el) * ((s.checkpointing ? 2 : 1) + 1) * L * windows;
  e.time.all_to_all = exchange_seconds(a2a_payload_step, S, hw);
  e.time.gradients =
      (m.gradient_all_reduce + m.zero_reduce_scatter + m.zero_all_gather) / (ring_gbs(G, hw) * 1e9);
  // AdamW and the clipping norm: per parameter on this rank, read p, g, m, v and write p, m, v
  // (28 bytes) plus the norm's read of g (4).
  const double updated =
      s.shard_optimizer ? static_cast<double>(ceil_div(flat, G)) : static_cast<double>(flat);
  e.time.optimizer = updated * 32.0 / (hw.memory_gbs * 1e9);

  const double step = e.time.total();
  e.tokens_per_second =
      static_cast<double>(s.dp()) * windows * static_cast<double>(s.seq_len) / step;
  e.mfu = e.flops.model() / (step * peak);
  e.fits = e.memory.total() <= hw.memory_bytes;

  // Notes: the limits this setup meets.
  if (replication > 1)
    e.notes.push_back(
        fmt::format("kv heads replicated: {} kv heads for S = {}, each sent to {} ranks (GQA rule)",
                    hkv, S, replication));
  if (S == hq)
    e.notes.push_back(fmt::format(
        "S = {} is the model's head count: Ulysses cannot split this model further (one head "
        "per rank)",
        S));
  if (e.tokens_per_rank * S != s.seq_len)
    e.notes.push_back(fmt::format(
        "T = {} does not split into {} equal shards of whole {}-token blocks (training's cut): "
        "the largest shard holds {} tokens (the estimate is for it)",
        s.seq_len, S, model::kGemmRowBlock, e.tokens_per_rank));
  if (S > hw.devices_per_node)
    e.notes.push_back(
        fmt::format("S = {} spans nodes of {} devices: the all-to-all crosses the inter-node links",
                    S, hw.devices_per_node));
  if (!e.fits)
    e.notes.push_back(fmt::format("does not fit: {:.1f} GiB per rank, the device has {:.1f} GiB",
                                  static_cast<double>(e.memory.total()) / (1 << 30),
                                  static_cast<double>(hw.memory_bytes) / (1 << 30)));
  return e;
}

}  // namespace anchorctx::train
