// Token-by-token inference of a Llama-family model in float32 with a KV cache: the forward pass
// HuggingFace's LlamaForCausalLM computes, one new token at a time, for generation and for
// evaluation's answers (several sequences at once).
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

// The keys (after RoPE) and values of a sequence's first `tokens` positions, per layer
// [tokens, kv_dim] each: a KV cache computed elsewhere (eval's batched prefill).
struct KvCache {
  std::vector<std::vector<float>> keys, values;
  std::int64_t tokens = 0;
};

// One token fed to one sequence in a batched step.
struct DecodeFeed {
  std::int64_t sequence = 0;
  std::int32_t token = 0;
};

// Holds one or more sequences, each with its own KV cache and position, stepped one token at a
// time alone or together: a batched step reads each weight once for all of its sequences
// (decoding is bound by reading the weights), and a sequence's logits have the same bits
// whichever sequences it is stepped beside (model/layers/decode_kernels.h). A model whose weights
// all are bf16 values (a bf16 checkpoint, eval in bf16 precision) is read as bf16 bits: the same
// results from half the memory reads, for half the matrices' memory on top.
class LlamaInference {
 public:
  // Takes the model and starts one empty sequence; `reserve_tokens` pre-sizes its KV cache (it
  // grows past it as needed). Throws anchorctx::Error for a RoPE configuration
  // rope::compute_frequencies rejects.
  explicit LlamaInference(LlamaModel model, std::int64_t reserve_tokens = 0);

  // ---- one sequence (sequence 0) ----

  // Feeds `token` at the next position (position() before the call) and returns the logits of
  // the token after it [vocab], valid until the next call. Throws anchorctx::Error on a token
  // outside the vocabulary, or a position at or past a sliding window (not implemented here).
  std::span<const float> step(std::int32_t token);

  // The number of tokens fed so far (the position of the next one).
  std::int64_t position() const { return position(0); }
  // Back to one empty sequence (its cache keeps its memory).
  void reset();

  // ---- several sequences ----

  // Replaces every sequence by one per cache, started from it, each with memory reserved for
  // `room` more tokens (an answer's length: the cache then never grows by reallocation). Throws
  // anchorctx::Error, before taking any, on a cache whose layer count or sizes do not match.
  void adopt_caches(std::vector<KvCache> caches, std::int64_t room = 0);
  std::int64_t sequences() const { return static_cast<std::int64_t>(sequences_.size()); }
  std::int64_t position(std::int64_t sequence) const;

  // Feeds each feed's token to its sequence at that sequence's next position, all in one pass
  // over the weights, and returns the logits of the token after each [feeds.size(), vocab] in
  // the order of `feeds`, valid until the next call. Throws anchorctx::Error on an empty list, a
  // sequence out of range or fed twice, and what step(token) throws on.
  std::span<const float> step(std::span<const DecodeFeed> feeds);

  const LlamaConfig& config() const { return model_.config; }
  const LlamaModel& model() const { return model_; }
  // The bf16 bits this decoder keeps of `matrix`, one of model()'s projection or MLP matrices or
  // its output matrix (compared by identity), or null when it keeps none (a model not of bf16
  // values). Valid while this object lives; eval's prefill shares them instead of a second copy.
  const std::uint16_t* bf16_bits(const std::vector<float>& matrix) const;

 private:
  struct Sequence {
    // Per layer and KV head ([layer * n_kv + head]): keys and values of every position fed,
    // [position, head_dim] (keys after RoPE).
    std::vector<std::vector<float>> keys, values;
    std::int64_t position = 0;
    rope::RopeFrequencies frequencies;  // for the sequence's length (dynamic scaling)
  };
  void check_cache(KvCache& cache) const;
  Sequence new_sequence(KvCache cache, std::int64_t room) const;
  void attention(std::span<const DecodeFeed> feeds, std::size_t layer);

  LlamaModel model_;
  // When every weight is a bf16 value: the matrices decode reads as their bf16 bits (the same
  // products from half the memory reads; model/layers/decode_kernels.h). Empty otherwise.
  struct LayerBits {
    std::vector<std::uint16_t> q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
  };
  static inline const LayerBits kNoBits{};
  // Calls fn(matrix, its bits) for each matrix of a layer that decode reads (Bits: LayerBits,
  // const or not).
  template <class Bits, class Fn>
  static void for_each_matrix(const LlamaLayerWeights& w, Bits& b, Fn&& fn) {
    fn(w.q_proj, b.q_proj);
    fn(w.k_proj, b.k_proj);
    fn(w.v_proj, b.v_proj);
    fn(w.o_proj, b.o_proj);
    fn(w.gate_proj, b.gate_proj);
    fn(w.up_proj, b.up_proj);
    fn(w.down_proj, b.down_proj);
  }
  std::vector<LayerBits> layer_bits_;
  std::vector<std::uint16_t> output_bits_;
  std::vector<Sequence> sequences_;
  // Activations of the current step, [feeds, width] each, reused across steps.
  std::vector<float> x_, xb_, q_, k_, v_, att_out_, scores_, gate_, up_, logits_;
};

}  // namespace anchorctx::model
