// The weights of a Llama-family model as plain float32 arrays, loaded from a HuggingFace-style
// model folder (any dtype on disk is widened to float32 exactly).
//
// The slots and their names are tensor_schema.h's (transformers' LlamaForCausalLM names,
// model.layers.{i}.self_attn.q_proj.weight, ...); every matrix is row-major [out_features,
// in_features] as nn.Linear stores it.
#pragma once

#include <filesystem>
#include <vector>

#include "anchorctx/model/config.h"
#include "anchorctx/model/tensor_schema.h"

namespace anchorctx::model {

class SafetensorsReader;

// One decoder layer: the schema's slots as float32 arrays (tensor_schema.h names and shapes
// them). Bias vectors are empty when the config has no such bias.
using LlamaLayerWeights = LayerTensors<std::vector<float>>;

// The whole model; lm_head is empty when tie_word_embeddings (the embedding serves as the LM
// head).
struct LlamaWeights : ModelTensors<std::vector<float>> {
  const std::vector<float>& output_matrix() const {
    return lm_head.empty() ? embed_tokens : lm_head;
  }
};

// Every weight rounded to bf16 in place (core::round_to_bf16: to nearest even), the weights a
// bf16 model computes with.
void round_to_bf16(LlamaWeights& weights);
// Whether every weight already is a bf16 value (its float32 bits end in 16 zeros), so that
// round_to_bf16 would change nothing.
bool holds_bf16_values(const LlamaWeights& weights);

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
