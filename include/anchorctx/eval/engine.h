// The inference engine evaluation runs on: a model, its batched prefill and its token-by-token
// decoder sharing the weights. A prompt is prefilled at once (prefill.h), its keys and values
// handed to model::LlamaInference as its KV cache, then the answer is decoded greedily (the
// prompts of a batch decoded together).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/eval/prefill.h"
#include "anchorctx/model/llama_inference.h"

namespace anchorctx::eval {

// The plan of one sequence of `tokens` tokens, one document, causal mask.
attention::BlockPlan causal_plan(std::int64_t tokens);
// The plan of several such sequences packed one after the other (varlen).
attention::BlockPlan causal_plan(const std::vector<std::int64_t>& tokens);

// Work done and time spent by an Engine, for throughput in the report.
struct EngineStats {
  std::int64_t prefill_tokens = 0, decode_tokens = 0;
  double prefill_s = 0.0, decode_s = 0.0;
};

class Engine {
 public:
  // Takes the model; in bf16 precision rounds its weights to bf16 first.
  Engine(model::LlamaModel model, PrefillOptions options = {});
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const model::LlamaConfig& config() const { return decoder_.config(); }
  // The model decoded and prefilled: in bf16 precision its weights rounded to bf16 (decoding
  // then steps in float32 on those, as docs/EVAL.md says).
  const model::LlamaModel& model() const { return decoder_.model(); }
  Prefill& prefill() { return prefill_; }
  const EngineStats& stats() const { return stats_; }

  // Greedy continuation of `prompt` (non-empty): prefilled at once, then up to `max_new`
  // tokens decoded with the KV cache, stopping after (and without) a stop id.
  std::vector<std::int32_t> greedy(std::span<const std::int32_t> prompt, std::int64_t max_new,
                                   std::span<const std::int32_t> stop_ids);
  // Greedy continuations of several prompts (each non-empty): one prefill over all of them
  // packed as varlen sequences (one causal sequence each: the kernels' tiles never cross
  // sequences), then the answers decoded together, each from its slice of the KV cache (a
  // step reads the weights once for every prompt still answering). The same tokens as
  // greedy() on each prompt alone (tests BatchedPrefill.GreedyBatchEqualsGreedyOneAtATime,
  // LlamaInferenceBatch.EachSequenceGetsTheLogitsItGetsAlone).
  std::vector<std::vector<std::int32_t>> greedy_batch(
      const std::vector<std::span<const std::int32_t>>& prompts, std::int64_t max_new,
      std::span<const std::int32_t> stop_ids);
  // The same, every prompt token fed through the decoder one at a time (the reference the
  // fast path is tested against).
  std::vector<std::int32_t> greedy_stepwise(std::span<const std::int32_t> prompt,
                                            std::int64_t max_new,
                                            std::span<const std::int32_t> stop_ids);

 private:
  PrefillResult prefill_for_decode(std::span<const std::int32_t> ids,
                                   std::span<const std::int32_t> positions,
                                   const attention::BlockPlan& plan);
  std::vector<std::vector<std::int32_t>> decode(std::span<const float> logits, std::int64_t max_new,
                                                std::span<const std::int32_t> stop_ids);

  model::LlamaInference decoder_;  // owns the model
  Prefill prefill_;                // reads the decoder's weights (and its bf16 bits)
  EngineStats stats_;
};

}  // namespace anchorctx::eval
