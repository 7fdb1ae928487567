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

// transformers' rule for a tied config (tie_word_embeddings) whose weights also hold an
// lm_head.weight: equal to the embedding, it is a copy and the model stays tied; different, the
// model is untied and uses it (transformers warns and does the same; so does this, on stderr).
// Returns `config` with tie_word_embeddings as the weights of `reader` define it.
LlamaConfig reconcile_tied_head(LlamaConfig config, const SafetensorsReader& reader);
// load_config(dir) reconciled with the folder's weights (opened only for a tied config, when the
// folder holds any): what a reader of a model folder's config uses, so that its layout matches
// the weights.
LlamaConfig load_model_config(const std::filesystem::path& dir);

// Reads every tensor `config` calls for from `reader`, checking each shape. A tied config may
// still carry an lm_head.weight equal to the embedding (transformers writes it sometimes); it is
// ignored (reconcile_tied_head unties a config whose copy differs). Throws
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
