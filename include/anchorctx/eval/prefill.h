// Prefill: the forward of a whole packed batch of prompts at once (every layer's q/k/v for all
// tokens, attention through the block-sparse kernels), the fast path evaluation needs for long
// prompts. It returns what the callers ask for: each token's loss against targets (perplexity),
// each sequence's last-token logits, and every layer's keys (after RoPE) and values (the KV
// cache that model::LlamaInference then decodes from).
//
// The arithmetic is the training forward's (model/layers.h, the same kernels and rounding
// points), on the weights of a model::LlamaModel, without the activations a backward would keep:
// per layer only the KV cache survives, so memory is O(T * (hidden + intermediate)) plus the cache.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/llama_weights.h"

namespace anchorctx::eval {

struct PrefillOptions {
  // fp32, or bf16 as the bf16 training forward computes it (weights rounded once, activations
  // rounded at the op outputs, RoPE hf_bf16).
  model::Precision precision = model::Precision::fp32;
  std::int64_t loss_chunk = 1024;  // tokens per LM-head chunk (the [T, V] logits never exist)
  int threads = 0;                 // attention kernel threads (0: OpenMP's default)
  // Rows per projection GEMM, chunks cut at every sequence start, so that a prompt's results do
  // not depend on the others in its batch. Large: each chunk is a GEMM with its threads' barrier,
  // which a loaded machine punishes (512 measured 0.90 of the training forward at 4K, docs/
  // PERFORMANCE.md).
  std::int64_t row_chunk = 4096;
  // bf16 precision: the projections, MLP, LM head and attention as the training forward runs
  // them (model::RunOptions::bf16_compute): native, bf16 operands with float32 sums (oneDNN, the
  // native attention kernels), or emulated, float32 products on bf16 values (the reference).
  // The constructor refuses native where it is unavailable. No effect in fp32.
  model::Bf16Compute bf16_compute = model::Bf16Compute::emulated;
};

struct PrefillRequest {
  std::span<const std::int32_t> input_ids;     // [T]
  std::span<const std::int32_t> position_ids;  // [T]
  const attention::BlockPlan* plan = nullptr;  // the batch's layout and mask
  std::span<const std::int32_t> targets;       // [T] (-1: none) or empty: no losses
  bool keep_cache = false;                     // return keys and values per layer
  bool last_logits = false;                    // return each sequence's last-token logits
};

struct PrefillResult {
  std::vector<double> token_loss;                // [T]: -log p(target); NaN where no target
  std::vector<float> last_logits;                // [B, V]
  std::vector<std::vector<float>> keys, values;  // [layers][T * kv_dim], keys after RoPE
};

class Prefill {
 public:
  // Copies nothing: `model` must outlive this object. In bf16 a rounded copy of the weights is
  // made once (unless they are bf16 values already). Throws anchorctx::Error for a head_dim the
  // kernels do not take.
  Prefill(const model::LlamaModel& model, PrefillOptions options = {});
  // The same over a decoder's model, using the bf16 bits the decoder keeps of its matrices for
  // the native GEMMs instead of converting a copy of its own. `decoder` must outlive this object.
  Prefill(const model::LlamaInference& decoder, PrefillOptions options);
  // Not copyable: weight_bits_ is keyed by this object's own weight arrays (a move keeps them).
  Prefill(const Prefill&) = delete;
  Prefill& operator=(const Prefill&) = delete;
  Prefill(Prefill&&) = default;

  // Throws anchorctx::Error on a malformed request (sizes, ids, a sliding-window model).
  PrefillResult run(const PrefillRequest& request);

  const model::LlamaConfig& config() const { return model_.config; }

 private:
  Prefill(const model::LlamaModel& model, PrefillOptions options,
          const model::LlamaInference* decoder);
  const model::LlamaWeights& weights() const;
  bool native() const;  // bf16 precision on native bf16 compute
  // The bf16 bits of a weight for the native GEMMs (null: none kept, emulated).
  model::Bf16Bits bits_of(const std::vector<float>& weight) const;

  const model::LlamaModel& model_;
  PrefillOptions options_;
  model::LlamaWeights rounded_;  // bf16, when the model's weights are not bf16 values already
  bool use_rounded_ = false;
  // Native bf16: every GEMM weight as bf16 bits, converted once (not per GEMM and row chunk: a
  // prompt's last-token logits alone would convert the whole LM head), by its float array; the
  // decoder's bits where it keeps them, else converted here into owned_bits_.
  std::unordered_map<const float*, const std::uint16_t*> weight_bits_;
  std::vector<std::vector<std::uint16_t>> owned_bits_;
  // The activations of a run, kept for the next: fresh arrays cost a page fault and the kernel's
  // zeroing per 4 KiB on every call (4-5% of an evaluation's samples, perf).
  struct Buffers {
    std::vector<float> x, xn, x_mid, rstd, q, o, lse, k, v, gate, up, logits, rows_x;
    std::vector<std::uint16_t> q16, k16, v16, o16;
  };
  Buffers buffers_;
};

}  // namespace anchorctx::eval
