// Sampling and the generation loop (see generation.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/core/random.h"
#include "anchorctx/model/generation.h"

namespace anchorctx::model {

std::int32_t argmax(std::span<const float> values) {
  require(!values.empty(), "argmax of no values");
  return static_cast<std::int32_t>(std::max_element(values.begin(), values.end()) - values.begin());
}

Sampler::Sampler(SamplingOptions options) : options_(options) {
  require(std::isfinite(options.temperature) && options.temperature >= 0.0f,
          "temperature {} must be a finite number >= 0", options.temperature);
  require(options.top_p > 0.0f && options.top_p <= 1.0f, "top_p {} must be in (0, 1]",
          options.top_p);
  // splitmix64 of the seed: any seed (0 included) gives a non-zero, well-mixed xorshift state.
  std::uint64_t seed = options.seed;
  state_ = core::splitmix64(seed) | 1;
}

float Sampler::next_uniform() {
  // xorshift64*; the top 24 bits make a float in [0, 1) exactly.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const std::uint64_t r = state_ * 0x2545f4914f6cdd1dULL;
  return static_cast<float>(r >> 40) / 16777216.0f;
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  if (options_.temperature == 0.0f) return argmax(logits);

  // probs = softmax(logits / temperature)
  probs_.resize(logits.size());
  const float max = *std::max_element(logits.begin(), logits.end());
  float sum = 0.0f;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    probs_[i] = std::exp((logits[i] - max) / options_.temperature);
    sum += probs_[i];
  }
  for (float& p : probs_)
    p /= sum;

  const float u = next_uniform();
  if (options_.top_p >= 1.0f) {
    float cumulative = 0.0f;
    std::size_t last_possible = 0;
    for (std::size_t i = 0; i < probs_.size(); ++i) {
      cumulative += probs_[i];
      if (u < cumulative) return static_cast<std::int32_t>(i);
      if (probs_[i] > 0.0f) last_possible = i;
    }
    // Rounding left u above the total: the last token that can be drawn (the last id of the
    // vocabulary was returned even at probability 0).
    return static_cast<std::int32_t>(last_possible);
  }

  // Nucleus: the most probable tokens until their mass reaches top_p, renormalized, as
  // transformers' TopPLogitsWarper keeps them (it drops the tokens whose ascending cumulative mass
  // is at most 1 - top_p: with four tokens of 0.25 and top_p 0.5, two; "exceeds" kept three).
  // Ties are ordered by id so that the choice does not depend on the sort's implementation.
  order_.resize(probs_.size());
  std::iota(order_.begin(), order_.end(), 0);
  std::sort(order_.begin(), order_.end(), [this](std::int32_t a, std::int32_t b) {
    const float pa = probs_[static_cast<std::size_t>(a)], pb = probs_[static_cast<std::size_t>(b)];
    return pa > pb || (pa == pb && a < b);
  });
  float mass = 0.0f;
  std::size_t kept = 0;
  while (kept < order_.size()) {
    const float p = probs_[static_cast<std::size_t>(order_[kept])];
    if (p == 0.0f && kept > 0) break;  // only impossible tokens are left
    mass += p;
    ++kept;
    if (mass >= options_.top_p) break;
  }
  const float target = u * mass;
  float cumulative = 0.0f;
  for (std::size_t i = 0; i < kept; ++i) {
    cumulative += probs_[static_cast<std::size_t>(order_[i])];
    if (target < cumulative) return order_[i];
  }
  return order_[kept - 1];
}

std::int64_t generation_context(const LlamaConfig& config) {
  return std::min(config.max_position_embeddings,
                  config.attention_window().value_or(config.max_position_embeddings));
}

GenerateResult generate(LlamaInference& model, std::span<const std::int32_t> prompt,
                        const GenerateOptions& options,
                        const std::function<void(std::int32_t)>& on_token) {
  require(!prompt.empty(), "generate: the prompt has no tokens (start it with bos)");
  const std::int64_t context = generation_context(model.config());
  require(static_cast<std::int64_t>(prompt.size()) <= context,
          "generate: the prompt has {} tokens, more than the model's context of {}", prompt.size(),
          context);
  require(options.max_new_tokens >= 0, "generate: max_new_tokens {} is negative",
          options.max_new_tokens);

  model.reset();
  Sampler sampler(options.sampling);
  std::span<const float> logits;
  for (const std::int32_t id : prompt)
    logits = model.step(id);

  GenerateResult result;
  result.stop = StopReason::max_new_tokens;
  if (options.max_new_tokens == 0) return result;
  while (true) {
    const std::int32_t next = sampler.sample(logits);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), next) !=
        options.stop_ids.end()) {
      result.stop = StopReason::eos;
      break;
    }
    result.tokens.push_back(next);
    if (on_token) on_token(next);
    // Feeding the new token would need a position past the context.
    if (model.position() >= context) {
      result.stop = StopReason::context;
      break;
    }
    // Before feeding it: the logits after the last token are never used.
    if (static_cast<std::int64_t>(result.tokens.size()) >= options.max_new_tokens) {
      result.stop = StopReason::max_new_tokens;
      break;
    }
    logits = model.step(next);
  }
  return result;
}

}  // namespace anchorctx::model
