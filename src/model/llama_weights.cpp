// Loading a Llama-family model's weights as float32 (see llama_weights.h).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "anchorctx/model/tensor_schema.h"

namespace anchorctx::model {
LlamaWeights load_llama_weights(const SafetensorsReader& reader, const LlamaConfig& config) {
  const ModelTensors<TensorSpec> schema = tensor_schema(config);
  LlamaWeights w;
  w.layers.resize(schema.layers.size());
  for_each_tensor(
      [&](const TensorSpec& spec, std::vector<float>& slot) {
        if (spec.present) slot = reader.read_f32(spec.name, spec.shape);
      },
      schema, w);
  return w;
}

LlamaModel load_llama_model(const std::filesystem::path& dir) {
  LlamaModel model;
  model.config = load_config(dir);
  model.weights = load_llama_weights(SafetensorsReader::open(dir), model.config);
  return model;
}

}  // namespace anchorctx::model
