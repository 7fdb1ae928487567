// Token-by-token inference of a Llama-family model in float32 with a KV cache: the forward pass
// HuggingFace's LlamaForCausalLM computes, one new token at a time, for generation.
//
// Not the training forward (that one runs packed windows through the attention kernels); this
// is the plain loop llama2.c's run.c runs, with transformers' conventions: rotate-half RoPE in
// float32 (part rope: every rope_scaling type) at position = index in the sequence, GQA, SwiGLU,
// tied or separate LM head, the q/k/v (and o, MLP) biases a config asks for.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "anchorctx/model/llama_weights.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::model {

class LlamaInference {
 public:
  // Takes the model; `reserve_tokens` pre-sizes the KV cache (it grows past it as needed).
  // Throws anchorctx::Error for a RoPE configuration rope::compute_frequencies rejects.
  explicit LlamaInference(LlamaModel model, std::int64_t reserve_tokens = 0);

  // Feeds `token` at the next position (position() before the call) and returns the logits of
  // the token after it [vocab], valid until the next call. Throws anchorctx::Error on a token
  // outside the vocabulary, or a position at or past a sliding window (not implemented here).
  std::span<const float> step(std::int32_t token);

  // The number of tokens fed so far (the position of the next one).
  std::int64_t position() const { return position_; }
  // Forgets every token fed (the cache keeps its memory).
  void reset();

  const LlamaConfig& config() const { return model_.config; }
  const LlamaModel& model() const { return model_; }

  // Starts the sequence from keys (after RoPE) and values of its first `tokens` positions
  // computed elsewhere (eval's batched prefill): per layer [tokens, kv_dim] each. Replaces what
  // was fed. Throws anchorctx::Error on a layer count or size that does not match.
  void adopt_cache(std::vector<std::vector<float>> keys, std::vector<std::vector<float>> values,
                   std::int64_t tokens);

 private:
  LlamaModel model_;
  rope::RopeFrequencies frequencies_;  // for the current sequence length (dynamic scaling)
  std::int64_t position_ = 0;
  // Per layer: keys and values of every position fed, [position, kv_dim] (keys after RoPE).
  std::vector<std::vector<float>> key_cache_, value_cache_;
  // Activations of the current token, reused across steps.
  std::vector<float> x_, xb_, q_, k_, v_, att_out_, scores_, gate_, up_, logits_;
};

}  // namespace anchorctx::model
