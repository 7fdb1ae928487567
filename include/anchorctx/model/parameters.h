// ParameterLayout: every trainable tensor of a Llama-family model as a named slice of one flat
// float32 buffer, in HuggingFace's names and shapes.
//
// One buffer for the weights, one of the same layout for the gradients and one each for the
// optimizer moments: the optimizer, gradient clipping and the communicator's all-reduce work on
// flat spans, and checkpoints write the slices under their HF names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/model/config.h"
#include "anchorctx/model/tensor_schema.h"

namespace anchorctx::model {

class SafetensorsReader;

struct ParameterInfo {
  std::string name;                 // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<std::int64_t> shape;  // as nn.Linear stores it: [out, in]
  std::size_t offset = 0;           // into the flat buffer, in elements
  std::size_t size = 0;             // elements
  bool decay = true;                // weight decay applies (matrices); false: norms, biases
};

class ParameterLayout {
 public:
  // The tensors `config` calls for (tensor_schema's present slots), in transformers' module
  // order (embedding, then per layer input norm, q/k/v/o (+ biases), post-attention norm,
  // gate/up/down (+ biases), final norm, lm_head unless tied). Each slice starts on a multiple
  // of 16 elements (64 bytes).
  static ParameterLayout for_config(const LlamaConfig& config);
  // The slices by slot (nullptr where the config has no such tensor); the pointers live as long
  // as this layout.
  ModelTensors<const ParameterInfo*> tensors() const;

  const std::vector<ParameterInfo>& params() const { return params_; }
  std::size_t total() const { return total_; }  // buffer size in elements (padding included)
  std::int64_t count() const;                   // parameters (padding excluded)
  // Throws anchorctx::Error naming `name` when absent.
  const ParameterInfo& at(std::string_view name) const;
  const ParameterInfo* find(std::string_view name) const;

 private:
  std::vector<ParameterInfo> params_;
  std::size_t total_ = 0;
  ModelTensors<std::ptrdiff_t> index_;  // each slot's index into params_, -1 when absent
};

// transformers' _init_weights for LlamaForCausalLM: matrices and the embedding ~ N(0,
// initializer_range), biases 0, norm weights 1. Seeded (std::mt19937_64 + Box-Muller, so the
// same seed gives the same model on every platform); padding zeroed.
void init_parameters(const ParameterLayout& layout, const LlamaConfig& config, std::uint64_t seed,
                     std::span<float> params);

// NaN or infinite values in one tensor: how many, and the first (its index in the tensor).
struct NonFiniteValues {
  std::size_t count = 0, first = 0;
  float value = 0.0f;
};
struct NonFiniteTensor {
  std::string tensor;  // the parameter's name
  NonFiniteValues values;
};
// The first tensor of `params` (laid out by `layout`) holding a NaN or an infinity, nullopt
// when every value is finite: what a trainer checks before a checkpoint takes its weights or
// optimizer moments. One vectorised pass over the values when they are all finite.
std::optional<NonFiniteTensor> find_non_finite(const ParameterLayout& layout,
                                               std::span<const float> params);

// Fills `params` from a model folder's weights (any stored dtype, widened exactly), checking
// each shape. A tied config's stray lm_head.weight is ignored. Throws anchorctx::Error naming
// the file and tensor when one is missing, misshapen or holds a NaN or infinity, and naming the
// tensors the layout does not call for when the file holds any (a config with fewer layers).
void load_parameters(const SafetensorsReader& reader, const ParameterLayout& layout,
                     std::span<float> params);
// The same from the model folder's weights, into a new buffer of layout.total() floats.
std::vector<float> load_parameters(const std::filesystem::path& model_dir,
                                   const ParameterLayout& layout);

}  // namespace anchorctx::model
