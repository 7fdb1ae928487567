// The HuggingFace names and shapes of every tensor slot (see tensor_schema.h).
#include "anchorctx/model/tensor_schema.h"

#include <string>

namespace anchorctx::model {
namespace {

TensorSpec matrix(std::string name, std::int64_t out, std::int64_t in, bool present = true) {
  return {std::move(name), {out, in}, present, /*decay=*/true};
}

TensorSpec vector(std::string name, std::int64_t size, bool present = true) {
  return {std::move(name), {size}, present, /*decay=*/false};
}

}  // namespace

ModelTensors<TensorSpec> tensor_schema(const LlamaConfig& config) {
  validate(config);
  const std::int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const std::int64_t vocab = config.vocab_size, q_dim = config.q_dim(), kv_dim = config.kv_dim();
  const bool qkv_bias = config.qkv_bias(), o_bias = config.o_bias(), mlp_bias = config.mlp_bias;

  ModelTensors<TensorSpec> s;
  s.embed_tokens = matrix("model.embed_tokens.weight", vocab, hidden);
  for (std::int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string attn = p + "self_attn.", mlp = p + "mlp.";
    LayerTensors<TensorSpec>& t = s.layers.emplace_back();
    t.input_norm = vector(p + "input_layernorm.weight", hidden);
    t.q_proj = matrix(attn + "q_proj.weight", q_dim, hidden);
    t.k_proj = matrix(attn + "k_proj.weight", kv_dim, hidden);
    t.v_proj = matrix(attn + "v_proj.weight", kv_dim, hidden);
    t.o_proj = matrix(attn + "o_proj.weight", hidden, q_dim);
    t.q_bias = vector(attn + "q_proj.bias", q_dim, qkv_bias);
    t.k_bias = vector(attn + "k_proj.bias", kv_dim, qkv_bias);
    t.v_bias = vector(attn + "v_proj.bias", kv_dim, qkv_bias);
    t.o_bias = vector(attn + "o_proj.bias", hidden, o_bias);
    t.post_attention_norm = vector(p + "post_attention_layernorm.weight", hidden);
    t.gate_proj = matrix(mlp + "gate_proj.weight", inter, hidden);
    t.up_proj = matrix(mlp + "up_proj.weight", inter, hidden);
    t.down_proj = matrix(mlp + "down_proj.weight", hidden, inter);
    t.gate_bias = vector(mlp + "gate_proj.bias", inter, mlp_bias);
    t.up_bias = vector(mlp + "up_proj.bias", inter, mlp_bias);
    t.down_bias = vector(mlp + "down_proj.bias", hidden, mlp_bias);
  }
  s.final_norm = vector("model.norm.weight", hidden);
  s.lm_head = matrix("lm_head.weight", vocab, hidden, !config.tie_word_embeddings);
  return s;
}

}  // namespace anchorctx::model
