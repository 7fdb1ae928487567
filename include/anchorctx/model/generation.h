// Text generation: choosing the next token from logits (greedy, temperature, nucleus/top-p) and
// the loop that feeds a prompt through LlamaInference and samples new tokens until eos.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "anchorctx/model/llama_inference.h"

namespace anchorctx::model {

struct SamplingOptions {
  float temperature = 1.0f;  // 0: greedy (argmax, the first of equal maxima)
  float top_p = 0.9f;        // nucleus sampling when in (0, 1); 1 samples the whole distribution
  std::uint64_t seed = 0;
};

// Draws token ids from logits. Deterministic for a seed, on every platform: the random numbers
// come from a xorshift generator written here, not from <random>'s distributions (whose results
// differ between standard libraries).
class Sampler {
 public:
  // Throws anchorctx::Error on a negative or non-finite temperature or top_p outside (0, 1].
  explicit Sampler(SamplingOptions options);

  // The next token for `logits` [vocab].
  std::int32_t sample(std::span<const float> logits);

 private:
  float next_uniform();  // in [0, 1)

  SamplingOptions options_;
  std::uint64_t state_;
  std::vector<float> probs_;
  std::vector<std::int32_t> order_;
};

// The index of the largest value (the first of equal maxima).
std::int32_t argmax(std::span<const float> values);

struct GenerateOptions {
  std::int64_t max_new_tokens = 256;
  SamplingOptions sampling;
  // Generation stops after emitting one of these (the eos itself is not returned).
  std::vector<std::int32_t> stop_ids;
};

enum class StopReason { eos, max_new_tokens, context };

struct GenerateResult {
  std::vector<std::int32_t> tokens;  // the new tokens, without the prompt and without eos
  StopReason stop = StopReason::max_new_tokens;
};

// The positions generation feeds: up to max_position_embeddings, and within a sliding window,
// which inference does not implement. Generation stops there (StopReason::context), so a KV
// cache never needs more.
std::int64_t generation_context(const LlamaConfig& config);

// Feeds `prompt` (non-empty: it starts with bos where the model has one) from position 0 and
// generates up to max_new_tokens, stopping at a stop id or when the sequence reaches the
// model's context: max_position_embeddings, or its sliding window where a layer slides. `on_token`
// (optional) sees each new token as it is chosen. Throws anchorctx::Error on an empty prompt or one
// longer than the context.
GenerateResult generate(LlamaInference& model, std::span<const std::int32_t> prompt,
                        const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token = {});

}  // namespace anchorctx::model
