// Small models for the eval tests: a LlamaModel built from a ParameterLayout buffer, and a tiny
// model trained for a few dozen steps on a repeating token pattern (so greedy decoding has
// clear answers, not near-ties).
#pragma once

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/train/batch.h"
#include "anchorctx/train/optimizer.h"

namespace anchorctx::eval_test {

inline model::LlamaConfig tiny_config(std::int64_t vocab = 48) {
  model::LlamaConfig c = model::preset("tiny");
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 1024;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.pad_token_id.reset();
  return c;
}

// The weights of `layout`'s slices of `params` as a LlamaModel.
inline model::LlamaModel model_from_params(const model::LlamaConfig& config,
                                           const model::ParameterLayout& layout,
                                           std::span<const float> params) {
  const auto get = [&](const std::string& name) {
    const model::ParameterInfo* p = layout.find(name);
    if (!p) return std::vector<float>{};
    return std::vector<float>(params.begin() + static_cast<std::ptrdiff_t>(p->offset),
                              params.begin() + static_cast<std::ptrdiff_t>(p->offset + p->size));
  };
  model::LlamaModel m;
  m.config = config;
  m.weights.embed_tokens = get("model.embed_tokens.weight");
  m.weights.final_norm = get("model.norm.weight");
  if (!config.tie_word_embeddings) m.weights.lm_head = get("lm_head.weight");
  for (std::int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    model::LlamaLayerWeights w;
    w.input_norm = get(p + "input_layernorm.weight");
    w.q_proj = get(p + "self_attn.q_proj.weight");
    w.k_proj = get(p + "self_attn.k_proj.weight");
    w.v_proj = get(p + "self_attn.v_proj.weight");
    w.o_proj = get(p + "self_attn.o_proj.weight");
    w.q_bias = get(p + "self_attn.q_proj.bias");
    w.k_bias = get(p + "self_attn.k_proj.bias");
    w.v_bias = get(p + "self_attn.v_proj.bias");
    w.o_bias = get(p + "self_attn.o_proj.bias");
    w.post_attention_norm = get(p + "post_attention_layernorm.weight");
    w.gate_proj = get(p + "mlp.gate_proj.weight");
    w.up_proj = get(p + "mlp.up_proj.weight");
    w.down_proj = get(p + "mlp.down_proj.weight");
    m.weights.layers.push_back(std::move(w));
  }
  return m;
}

// An untrained tiny model (seeded initialisation).
inline model::LlamaModel random_tiny_model(std::uint64_t seed = 3) {
  const model::LlamaConfig config = tiny_config();
  const model::ParameterLayout layout = model::ParameterLayout::for_config(config);
  std::vector<float> params(layout.total());
  model::init_parameters(layout, config, seed, params);
  return model_from_params(config, layout, params);
}

// The repeating pattern the tiny model learns: a period-11 cycle over tokens [3, vocab).
inline std::vector<std::int32_t> pattern(std::int64_t length, std::int64_t offset = 0) {
  static constexpr std::int32_t kCycle[] = {5, 17, 9, 30, 12, 44, 3, 21, 8, 27, 14};
  std::vector<std::int32_t> out;
  for (std::int64_t i = 0; i < length; ++i)
    out.push_back(kCycle[(i + offset) % 11]);
  return out;
}

// A tiny model trained on windows of the pattern (40 AdamW steps, a few seconds).
inline model::LlamaModel trained_tiny_model() {
  const model::LlamaConfig config = tiny_config();
  model::LlamaTrainModel m(config, {});
  model::init_parameters(m.layout(), config, 7, m.params());
  train::AdamW adam(m.layout(), {0.9, 0.95, 1e-8, 0.0});
  for (int step = 0; step < 40; ++step) {
    const std::vector<std::int32_t> tokens = pattern(129, step);
    const train::RawWindow window{tokens, {}, {}};
    const train::Batch batch =
        train::make_batch({&window, 1}, data::AnchorMode::none,
                          {attention::MaskKind::causal, rope::PositionPolicy::global, false});
    m.zero_grads();
    m.forward_backward(batch.view(), 1.0 / static_cast<double>(batch.target_count));
    adam.step(m.params(), m.grads(), 1e-2);
  }
  return model_from_params(config, m.layout(), m.params());
}

}  // namespace anchorctx::eval_test
