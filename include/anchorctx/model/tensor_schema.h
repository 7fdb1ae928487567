// The tensors of a Llama-family model, defined once: a slot per tensor of a decoder layer and of
// the model around it, each with its HuggingFace name and shape derived from the config.
//
// Every part that names a weight reads these slots: ParameterLayout (the training buffer and
// the checkpoints written from it), the training model, LlamaWeights (inference), and the
// llama2.c import and export. A slot holds whatever its user keeps per tensor: the schema's
// TensorSpec, a ParameterInfo* into the flat training buffer, or a float32 array
// (LlamaWeights), so adding a tensor means adding one slot here and one line in
// tensor_schema().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/config.h"

namespace anchorctx::model {

// The tensors of one decoder layer. Biases exist only when the config asks for them
// (qkv_bias(), o_bias(), mlp_bias).
template <typename T>
struct LayerTensors {
  T input_norm;                     // input_layernorm.weight [hidden]
  T q_proj, k_proj, v_proj;         // self_attn.{q,k,v}_proj.weight [q_dim|kv_dim, hidden]
  T o_proj;                         // self_attn.o_proj.weight [hidden, q_dim]
  T q_bias, k_bias, v_bias;         // self_attn.{q,k,v}_proj.bias [q_dim|kv_dim]
  T o_bias;                         // self_attn.o_proj.bias [hidden]
  T post_attention_norm;            // post_attention_layernorm.weight [hidden]
  T gate_proj, up_proj;             // mlp.{gate,up}_proj.weight [intermediate, hidden]
  T down_proj;                      // mlp.down_proj.weight [hidden, intermediate]
  T gate_bias, up_bias, down_bias;  // mlp.*.bias
};

// The whole model: embedding, layers, final norm, LM head (absent when tie_word_embeddings).
template <typename T>
struct ModelTensors {
  T embed_tokens;  // model.embed_tokens.weight [vocab, hidden]
  std::vector<LayerTensors<T>> layers;
  T final_norm;  // model.norm.weight [hidden]
  T lm_head;     // lm_head.weight [vocab, hidden]
};

// What the schema says of one slot.
struct TensorSpec {
  std::string name;                 // HuggingFace name, "model.layers.0.self_attn.q_proj.weight"
  std::vector<std::int64_t> shape;  // as nn.Linear / nn.Embedding store it: [out, in]
  bool present = false;             // the config calls for it
  bool decay = false;               // weight decay applies (matrices and the embedding)

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (const std::int64_t d : shape)
      n *= d;
    return n;
  }
};

// The slots of `config`, present or not, each named and shaped. Validates the config.
ModelTensors<TensorSpec> tensor_schema(const LlamaConfig& config);

// A layer's slots in transformers' module order (each projection's weight, then its bias), the
// order ParameterLayout lays them out and checkpoints list them.
template <typename Layer>
auto layer_slots_in_order(Layer& l) {
  return std::tie(l.input_norm, l.q_proj, l.q_bias, l.k_proj, l.k_bias, l.v_proj, l.v_bias,
                  l.o_proj, l.o_bias, l.post_attention_norm, l.gate_proj, l.gate_bias, l.up_proj,
                  l.up_bias, l.down_proj, l.down_bias);
}

namespace detail {
template <std::size_t I, typename Fn, typename... Tuples>
void call_slot(Fn& fn, const Tuples&... tuples) {
  fn(std::get<I>(tuples)...);
}
template <typename Fn, std::size_t... I, typename... Tuples>
void zip_slots(Fn& fn, std::index_sequence<I...>, const Tuples&... tuples) {
  (call_slot<I>(fn, tuples...), ...);
}
}  // namespace detail

// Calls fn(slot of `first`, slot of each of `rest`...) for every slot in module order:
// embedding, each layer (layer_slots_in_order), final norm, LM head. The models must have the
// same number of layers (e.g. the schema and a weight container of the same config).
template <typename Fn, typename Model, typename... Models>
void for_each_tensor(Fn&& fn, Model&& first, Models&&... rest) {
  require(((rest.layers.size() == first.layers.size()) && ...),
          "for_each_tensor: models with different layer counts");
  fn(first.embed_tokens, rest.embed_tokens...);
  constexpr std::size_t kSlots =
      std::tuple_size_v<decltype(layer_slots_in_order(first.layers.front()))>;
  for (std::size_t l = 0; l < first.layers.size(); ++l)
    detail::zip_slots(fn, std::make_index_sequence<kSlots>{}, layer_slots_in_order(first.layers[l]),
                      layer_slots_in_order(rest.layers[l])...);
  fn(first.final_norm, rest.final_norm...);
  fn(first.lm_head, rest.lm_head...);
}

// Slots of another kind for the same number of layers as `schema` (every slot value-initialized).
template <typename T>
ModelTensors<T> empty_slots(const ModelTensors<TensorSpec>& schema) {
  ModelTensors<T> out{};
  out.layers.resize(schema.layers.size());
  return out;
}

}  // namespace anchorctx::model
