// The tensor schema (tensor_schema.h) against every place that names a weight: the parameter
// layout, the checkpoint writer, the llama2.c import, the weights loader. Each test compares
// with what was really written or laid out, never with the schema itself.
#include "anchorctx/model/tensor_schema.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/safetensors.h"
#include "anchorctx/train/checkpoint.h"
#include "support/llama2c_tokenizer.h"
#include "support/temp_dir.h"
#include "support/tiny_config.h"

namespace anchorctx::model {
namespace {

using Shapes = std::map<std::string, std::vector<std::int64_t>>;

// Every kind of slot present in one config or another: untied Llama, Llama with all biases and
// head_dim != hidden / heads, tied Qwen2 with q/k/v biases.
std::vector<LlamaConfig> configs() {
  LlamaConfig untied = test::tiny_config();
  untied.tie_word_embeddings = false;
  LlamaConfig biases = test::tiny_config();
  biases.attention_bias = true;
  biases.mlp_bias = true;
  biases.head_dim = 16;
  LlamaConfig qwen2 = test::tiny_config();
  qwen2.model_type = ModelType::qwen2;
  qwen2.attention_bias = true;
  qwen2.tie_word_embeddings = true;
  qwen2.num_hidden_layers = 3;
  return {untied, biases, qwen2};
}

// The schema's present slots by name, in module order.
std::vector<TensorSpec> present(const LlamaConfig& config) {
  std::vector<TensorSpec> out;
  for_each_tensor(
      [&](const TensorSpec& s) {
        if (s.present) out.push_back(s);
      },
      tensor_schema(config));
  return out;
}

Shapes shapes_of(const std::vector<TensorSpec>& specs) {
  Shapes out;
  for (const TensorSpec& s : specs)
    out[s.name] = s.shape;
  return out;
}

Shapes shapes_in_file(const std::filesystem::path& model_dir) {
  Shapes out;
  const SafetensorsReader reader = SafetensorsReader::open(model_dir);
  for (const TensorInfo& t : reader.tensors())
    out[t.name] = t.shape;
  return out;
}

TEST(TensorSchema, NamesAreTransformersNames) {
  LlamaConfig c = configs()[1];
  c.tie_word_embeddings = true;
  const ModelTensors<TensorSpec> s = tensor_schema(c);
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.embed_tokens.name, "model.embed_tokens.weight");
  EXPECT_EQ(s.layers[1].q_proj.name, "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(s.layers[1].q_proj.shape, (std::vector<std::int64_t>{64, 32}));  // 4 heads x 16
  EXPECT_EQ(s.layers[1].k_bias.name, "model.layers.1.self_attn.k_proj.bias");
  EXPECT_EQ(s.layers[1].k_bias.shape, (std::vector<std::int64_t>{32}));  // 2 kv heads x 16
  EXPECT_EQ(s.layers[0].o_proj.shape, (std::vector<std::int64_t>{32, 64}));
  EXPECT_EQ(s.layers[0].post_attention_norm.name, "model.layers.0.post_attention_layernorm.weight");
  EXPECT_EQ(s.layers[0].down_proj.name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(s.layers[0].down_proj.shape, (std::vector<std::int64_t>{32, 64}));
  EXPECT_EQ(s.layers[0].up_bias.name, "model.layers.0.mlp.up_proj.bias");
  EXPECT_EQ(s.final_norm.name, "model.norm.weight");
  EXPECT_EQ(s.lm_head.name, "lm_head.weight");
  EXPECT_FALSE(s.lm_head.present);  // tied: the embedding is the head
  // Every name once.
  std::set<std::string> names;
  std::size_t slots = 0;
  for_each_tensor(
      [&](const TensorSpec& spec) {
        names.insert(spec.name);
        ++slots;
      },
      s);
  EXPECT_EQ(names.size(), slots);
  EXPECT_EQ(slots, 3u + 2u * 16u);
}

TEST(TensorSchema, ParameterLayoutIsThePresentSlotsInOrder) {
  for (const LlamaConfig& c : configs()) {
    const ParameterLayout layout = ParameterLayout::for_config(c);
    const std::vector<TensorSpec> specs = present(c);
    ASSERT_EQ(layout.params().size(), specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(layout.params()[i].name, specs[i].name);
      EXPECT_EQ(layout.params()[i].shape, specs[i].shape);
      EXPECT_EQ(layout.params()[i].decay, specs[i].shape.size() == 2) << specs[i].name;
    }
    // The slots point at the slices of the same name.
    const ModelTensors<const ParameterInfo*> slots = layout.tensors();
    for_each_tensor(
        [&](const TensorSpec& spec, const ParameterInfo* const& info) {
          if (!spec.present) {
            EXPECT_EQ(info, nullptr) << spec.name;
          } else {
            ASSERT_NE(info, nullptr) << spec.name;
            EXPECT_EQ(info->name, spec.name);
          }
        },
        tensor_schema(c), slots);
  }
}

TEST(TensorSchema, CheckpointWriterWritesExactlyTheSchema) {
  for (const LlamaConfig& c : configs()) {
    test::TempDir run;
    const ParameterLayout layout = ParameterLayout::for_config(c);
    std::vector<float> params(layout.total());
    init_parameters(layout, c, 1, params);
    train::CheckpointData data;
    data.config = &c;
    data.layout = &layout;
    data.params = params;
    const std::filesystem::path dir = train::save_checkpoint(run.path(), data);
    EXPECT_EQ(shapes_in_file(dir), shapes_of(present(c)));

    // And the loader fills exactly the present slots.
    const LlamaModel loaded = load_llama_model(dir);
    for_each_tensor(
        [&](const TensorSpec& spec, const std::vector<float>& values) {
          EXPECT_EQ(static_cast<std::int64_t>(values.size()), spec.present ? spec.numel() : 0)
              << spec.name;
        },
        tensor_schema(c), loaded.weights);
  }
}

TEST(TensorSchema, Llama2cImportWritesExactlyTheSchema) {
  // A llama2.c model: tied, no biases, head_dim = dim / heads.
  LlamaConfig c = llama2c_config(llama2c_header_for(test::tiny_config()));
  c.vocab_size = 40;
  c.max_position_embeddings = 16;
  for (const bool tied : {true, false}) {
    c.tie_word_embeddings = tied;
    LlamaModel model;
    model.config = c;
    model.weights.layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
    for_each_tensor(
        [&](const TensorSpec& spec, std::vector<float>& values) {
          if (spec.present) values.assign(static_cast<std::size_t>(spec.numel()), 0.25f);
        },
        tensor_schema(c), model.weights);
    test::TempDir dir;
    export_llama2c(model, dir.path() / "model.bin");
    const std::filesystem::path folder = dir.path() / "imported";
    import_llama2c(
        dir.path() / "model.bin",
        test::llama2c_tokenizer_file(dir.write("tok.bin", test::tiny_llama2c_tokenizer_bytes(40))),
        folder);
    EXPECT_EQ(shapes_in_file(folder), shapes_of(present(c))) << "tied " << tied;
  }
}

}  // namespace
}  // namespace anchorctx::model
