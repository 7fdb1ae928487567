// Loading a Llama-family model's weights as float32 (see llama_weights.h).
#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "anchorctx/model/tensor_schema.h"
#include "model/weight_checks.h"

namespace anchorctx::model {

// Every tensor the config calls for, each checked finite; then the file may hold nothing else
// (weight_checks.h). A tied model's copy of the embedding as lm_head.weight is tolerated, and a
// tied model may hold its one matrix under lm_head.weight alone (transformers fills the
// embedding from it).
LlamaWeights load_llama_weights(const SafetensorsReader& reader, const LlamaConfig& config) {
  const ModelTensors<TensorSpec> schema = tensor_schema(config);
  LlamaWeights w;
  w.layers.resize(schema.layers.size());
  std::set<std::string> used;
  for_each_tensor(
      [&](const TensorSpec& spec, std::vector<float>& slot) {
        if (!spec.present) return;
        const std::string name = stored_tensor_name(reader, spec.name, config.tie_word_embeddings);
        slot = reader.read_f32(name, spec.shape);
        const TensorInfo* info = reader.find(name);
        require_finite(slot, name,
                       info != nullptr ? reader.files().at(info->file).string() : reader.source());
        used.insert(name);
      },
      schema, w);
  if (config.tie_word_embeddings) used.insert("lm_head.weight");
  require_no_unused_tensors(reader, used);
  return w;
}

void round_to_bf16(LlamaWeights& weights) {
  for_each_tensor([](std::vector<float>& slot) { round_to_bf16(std::span<float>(slot)); }, weights);
}

bool holds_bf16_values(const LlamaWeights& weights) {
  bool all = true;
  for_each_tensor(
      [&](const std::vector<float>& slot) {
        all = all && std::all_of(slot.begin(), slot.end(), [](float v) {
                return (std::bit_cast<std::uint32_t>(v) & 0xFFFFu) == 0;
              });
      },
      weights);
  return all;
}

LlamaModel load_llama_model(const std::filesystem::path& dir) {
  LlamaModel model;
  const SafetensorsReader reader = SafetensorsReader::open(dir);
  model.config = reconcile_tied_head(load_config(dir), reader);
  model.weights = load_llama_weights(reader, model.config);
  return model;
}

}  // namespace anchorctx::model
