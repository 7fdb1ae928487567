// Loading a Llama-family model's weights as float32 (see llama_weights.h).
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "model/weight_checks.h"

namespace anchorctx::model {
namespace {

// Reads tensors by name, each checked finite, and keeps the names read so that finish() can
// refuse a file holding more than the config calls for (weight_checks.h).
class Loader {
 public:
  explicit Loader(const SafetensorsReader& reader) : reader_(reader) {}

  std::vector<float> operator()(const std::string& name, std::vector<std::int64_t> shape) {
    std::vector<float> values = reader_.read_f32(name, shape);
    const TensorInfo* info = reader_.find(name);
    require_finite(values, name,
                   info != nullptr ? reader_.files().at(info->file).string() : reader_.source());
    used_.insert(name);
    return values;
  }
  // An optional tensor: empty unless `wanted`.
  std::vector<float> operator()(bool wanted, const std::string& name,
                                std::vector<std::int64_t> shape) {
    if (!wanted) return {};
    return (*this)(name, std::move(shape));
  }
  // `ignored`: a tensor the file may hold without it being read (a tied model's stray lm_head).
  void finish(const std::string& ignored) {
    used_.insert(ignored);
    require_no_unused_tensors(reader_, used_);
  }

 private:
  const SafetensorsReader& reader_;
  std::set<std::string> used_;
};

}  // namespace

LlamaWeights load_llama_weights(const SafetensorsReader& reader, const LlamaConfig& config) {
  const std::int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const std::int64_t vocab = config.vocab_size, q_dim = config.q_dim(), kv_dim = config.kv_dim();
  Loader load(reader);

  LlamaWeights w;
  w.embed_tokens = load("model.embed_tokens.weight", {vocab, hidden});
  w.layers.resize(static_cast<std::size_t>(config.num_hidden_layers));
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string attn = p + "self_attn.", mlp = p + "mlp.";
    LlamaLayerWeights& layer = w.layers[l];
    layer.input_norm = load(p + "input_layernorm.weight", {hidden});
    layer.q_proj = load(attn + "q_proj.weight", {q_dim, hidden});
    layer.k_proj = load(attn + "k_proj.weight", {kv_dim, hidden});
    layer.v_proj = load(attn + "v_proj.weight", {kv_dim, hidden});
    layer.o_proj = load(attn + "o_proj.weight", {hidden, q_dim});
    layer.q_bias = load(config.qkv_bias(), attn + "q_proj.bias", {q_dim});
    layer.k_bias = load(config.qkv_bias(), attn + "k_proj.bias", {kv_dim});
    layer.v_bias = load(config.qkv_bias(), attn + "v_proj.bias", {kv_dim});
    layer.o_bias = load(config.o_bias(), attn + "o_proj.bias", {hidden});
    layer.post_attention_norm = load(p + "post_attention_layernorm.weight", {hidden});
    layer.gate_proj = load(mlp + "gate_proj.weight", {inter, hidden});
    layer.up_proj = load(mlp + "up_proj.weight", {inter, hidden});
    layer.down_proj = load(mlp + "down_proj.weight", {hidden, inter});
    layer.gate_bias = load(config.mlp_bias, mlp + "gate_proj.bias", {inter});
    layer.up_bias = load(config.mlp_bias, mlp + "up_proj.bias", {inter});
    layer.down_bias = load(config.mlp_bias, mlp + "down_proj.bias", {hidden});
  }
  w.final_norm = load("model.norm.weight", {hidden});
  if (!config.tie_word_embeddings) w.lm_head = load("lm_head.weight", {vocab, hidden});
  load.finish(config.tie_word_embeddings ? "lm_head.weight" : "");
  return w;
}

LlamaModel load_llama_model(const std::filesystem::path& dir) {
  LlamaModel model;
  model.config = load_config(dir);
  model.weights = load_llama_weights(SafetensorsReader::open(dir), model.config);
  return model;
}

}  // namespace anchorctx::model
