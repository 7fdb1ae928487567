// LlamaConfig: the architecture of a Llama-family model (LLaMA-2/3, Mistral, Qwen2), read from and
// written to a HuggingFace `config.json`.
//
// The JSON is the contract with transformers: a folder written by save_config() plus the weights
// loads with AutoModelForCausalLM.from_pretrained as is, and a config.json written by transformers
// loads here. Fields keep transformers' names so that the mapping is obvious.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/enum_names.h"
#include "anchorctx/rope/scaling.h"

namespace anchorctx::model {

// The families this project implements. They share one architecture (pre-norm decoder, RoPE,
// GQA, SwiGLU); they differ in defaults and in biases (Qwen2: q/k/v projections have a bias).
enum class ModelType { llama, mistral, qwen2 };
// config.json's model_type values (core/enum_names.h).
inline constexpr core::EnumName<ModelType> kModelTypeNames[] = {
    {ModelType::llama, "llama"}, {ModelType::mistral, "mistral"}, {ModelType::qwen2, "qwen2"}};
constexpr std::span<const core::EnumName<ModelType>> enum_names(ModelType) {
  return kModelTypeNames;
}

constexpr std::string_view to_string(ModelType type) {
  return core::enum_name(type);
}
// "llama", "mistral", "qwen2"; nullopt for anything else.
constexpr std::optional<ModelType> parse_model_type(std::string_view name) {
  return core::parse_enum<ModelType>(name);
}

// RoPE scaling lives with the rotation (part `rope`); the config names it as transformers does.
using rope::parse_rope_scaling_type;
using rope::RopeScaling;
using rope::RopeScalingType;
using rope::to_string;

struct LlamaConfig {
  ModelType model_type = ModelType::llama;
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 32;
  // Per-head size. 0 means "hidden_size / num_attention_heads" (what transformers does when the
  // key is absent); load_config() and preset() always fill it in, see resolved_head_dim().
  std::int64_t head_dim = 0;
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  // Llama's `attention_bias`: a bias on q/k/v AND o projections. Qwen2 has no such key: its q/k/v
  // projections always have a bias and o_proj never; use qkv_bias()/o_bias(), not this field.
  bool attention_bias = false;
  bool mlp_bias = false;  // Llama's `mlp_bias` (gate/up/down biases); Qwen2/Mistral: false
  // Mistral's `sliding_window` (Qwen2's when `use_sliding_window`); unset = full attention.
  // The model code does not implement sliding windows: it refuses sequences longer than
  // attention_window().
  std::optional<std::int64_t> sliding_window;
  // Qwen2 only, kept as read so that a saved config slides the same layers: with a window, the
  // layers from max_window_layers on slide (transformers' default 28), unless layer_types names
  // each layer's kind ("full_attention" or "sliding_attention"; empty = derived).
  std::int64_t max_window_layers = 28;
  std::vector<std::string> layer_types;
  std::string hidden_act =
      "silu";  // silu, the only activation accepted (or "swish", its other name)
  double initializer_range = 0.02;
  // transformers applies it to the attention probabilities in training; anchorctx's kernels have
  // no dropout, so training warns and runs without it. Kept, so that a saved config says what
  // its source's did. In [0, 1).
  double attention_dropout = 0.0;
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_ids;  // a list in LLaMA-3 configs, one id elsewhere
  std::optional<std::int64_t> pad_token_id;
  // The weights' dtype on disk ("float32", "bfloat16", "float16" or "float64"; config key
  // torch_dtype, transformers v5's dtype): a label only, the tensors' own dtypes are read.
  std::string torch_dtype = "float32";
  // The config.json keys this struct does not model (transformers_version, auto_map, a
  // project's own), as a JSON object's text, written back by config_to_json; "" when none.
  // quantization_config is not kept: the weights anchorctx writes are not quantized.
  std::string other_keys;

  // Per-head size, falling back to hidden_size / num_attention_heads.
  std::int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  std::int64_t q_dim() const { return num_attention_heads * resolved_head_dim(); }
  std::int64_t kv_dim() const { return num_key_value_heads * resolved_head_dim(); }
  // The window some layer attends within (sliding_window where at least one layer slides), so
  // the longest sequence the model code, which has no sliding windows, computes exactly.
  std::optional<std::int64_t> attention_window() const;
  bool qkv_bias() const { return model_type == ModelType::qwen2 || attention_bias; }
  bool o_bias() const { return model_type != ModelType::qwen2 && attention_bias; }

  friend bool operator==(const LlamaConfig&, const LlamaConfig&) = default;
};

// Throws anchorctx::Error (naming `source`, e.g. the file) when the sizes are inconsistent:
// non-positive sizes, num_attention_heads not a multiple of num_key_value_heads, hidden_size not
// divisible by heads without an explicit head_dim, odd head_dim (RoPE rotates halves), a
// rope_scaling missing what its type needs (llama3: original_max_position_embeddings; factor
// >= 1 for linear/dynamic/llama3/yarn), a hidden_act other than silu (swish), a bad torch_dtype,
// attention_dropout outside [0, 1).
void validate(const LlamaConfig& config, std::string_view source = "config");

// Parses the text of a config.json. Errors name `source` and the key ("config.json: key
// 'hidden_size': expected an integer"). Keys absent from the JSON take transformers' defaults for
// the model type; unknown keys are ignored; an unknown model_type is an error. Accepts both
// rope_theta + rope_scaling and transformers v5's `rope_parameters`. The result is validated.
LlamaConfig parse_config(std::string_view json_text, std::string_view source = "config.json");

// Reads `path`: a config.json file, or a folder holding one.
LlamaConfig load_config(const std::filesystem::path& path);

// The JSON text save_config() writes (indented, keys sorted, trailing newline): architectures
// (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM), model_type and every field above,
// with rope_scaling in the legacy-compatible form ({"rope_type": ..., "type": ...} or null).
std::string config_to_json(const LlamaConfig& config);

// Validates, then writes config_to_json() to `path` (a file path, normally DIR/config.json)
// atomically: a temporary file beside it, fsync, rename. Throws anchorctx::Error.
void save_config(const LlamaConfig& config, const std::filesystem::path& path);

// Named presets. "tiny": the embedded demo's model (hidden 128, 4 layers, 4 heads, 2 kv heads,
// intermediate 352, vocab 259 and bos/eos/pad 256/257/258 for the byte tokenizer, theta 10000,
// max positions 4096, untied LM head).
// "reference": the benchmark model (hidden 512, 8 layers, 8 heads, 2 kv heads, intermediate 1408,
// vocab 32000, max positions 4096).
// "small": the study's model (hidden 384, 6 layers, 6 heads of 64, 2 kv heads, intermediate 1152,
// the byte tokenizer's vocab and ids as tiny, theta 10000, max positions 4096).
// "llama2-7b" and "llama3-8b": the paper's models as their HF config.json files give them (for
// `anchorctx plan`; too big to train here). Throws
// anchorctx::Error listing the names for anything else.
LlamaConfig preset(std::string_view name);
// The names preset() knows, for messages and --help.
std::vector<std::string> preset_names();

// Number of trainable parameters (embeddings, norms, projections, biases; the LM head counted
// once when tied), as transformers' model.num_parameters() reports.
std::int64_t parameter_count(const LlamaConfig& config);

// Weights of the matrix products one token passes through: q, k, v, o, gate, up, down per layer
// and the LM head (the embedding is a lookup, not a product; norms and biases are negligible).
// Model FLOPs are 2 per such weight and token forward, 6 with the backward.
double matrix_parameter_count(const LlamaConfig& config);

}  // namespace anchorctx::model
