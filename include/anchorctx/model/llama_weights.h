// The weights of a Llama-family model as plain float32 arrays, loaded from a HuggingFace-style
// model folder (any dtype on disk is widened to float32 exactly).
//
// Names follow transformers' LlamaForCausalLM (model.layers.{i}.self_attn.q_proj.weight, ...);
// every matrix is row-major [out_features, in_features] as nn.Linear stores it.
#pragma once

#include <filesystem>
#include <vector>

#include "anchorctx/model/config.h"

namespace anchorctx::model {

class SafetensorsReader;

// One decoder layer. Bias vectors are empty when the config has no such bias.
struct LlamaLayerWeights {
  std::vector<float> input_norm;                     // [hidden]
  std::vector<float> q_proj;                         // [q_dim, hidden]
  std::vector<float> k_proj;                         // [kv_dim, hidden]
  std::vector<float> v_proj;                         // [kv_dim, hidden]
  std::vector<float> o_proj;                         // [hidden, q_dim]
  std::vector<float> q_bias, k_bias, v_bias;         // [q_dim], [kv_dim], [kv_dim]: qkv_bias()
  std::vector<float> o_bias;                         // [hidden]: o_bias()
  std::vector<float> post_attention_norm;            // [hidden]
  std::vector<float> gate_proj;                      // [intermediate, hidden]
  std::vector<float> up_proj;                        // [intermediate, hidden]
  std::vector<float> down_proj;                      // [hidden, intermediate]
  std::vector<float> gate_bias, up_bias, down_bias;  // mlp_bias
};

struct LlamaWeights {
  std::vector<float> embed_tokens;  // [vocab, hidden]
  std::vector<LlamaLayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  // [vocab, hidden]; empty when tie_word_embeddings (the embedding serves as the LM head).
  std::vector<float> lm_head;

  const std::vector<float>& output_matrix() const {
    return lm_head.empty() ? embed_tokens : lm_head;
  }
};

// Reads every tensor `config` calls for from `reader`, checking each shape. A tied config may
// still carry lm_head.weight (transformers writes it sometimes); it is ignored. Throws
// anchorctx::Error naming the source and the tensor when one is missing, misshapen or holds a
// NaN or infinity, and naming the tensors the config does not call for when there are any.
LlamaWeights load_llama_weights(const SafetensorsReader& reader, const LlamaConfig& config);

// A model folder: config.json and model.safetensors (or shards with the index).
struct LlamaModel {
  LlamaConfig config;
  LlamaWeights weights;
};
LlamaModel load_llama_model(const std::filesystem::path& dir);

}  // namespace anchorctx::model
