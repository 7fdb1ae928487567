// Writing a model in llama2.c's legacy checkpoint format (see llama2c.h): the inverse of
// llama2c_import.cpp.
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/tensor_schema.h"

namespace anchorctx::model {
namespace {

// The output file, written in order.
class CheckpointWriter {
 public:
  explicit CheckpointWriter(const std::filesystem::path& out) : file_(out) {}

  void header(const Llama2cHeader& h) {
    const std::int32_t values[7] = {
        h.dim,     h.hidden_dim, h.n_layers,
        h.n_heads, h.n_kv_heads, h.shared_classifier ? h.vocab_size : -h.vocab_size,
        h.seq_len};
    file_.write(std::as_bytes(std::span<const std::int32_t>(values)));
  }
  void floats(std::span<const float> values) { file_.write(std::as_bytes(values)); }
  void commit() { file_.commit(); }

 private:
  core::AtomicFile file_;
};

// Requires `values` to hold `expected` floats: a LlamaModel built in memory may not match its
// config.
void check_size(const std::vector<float>& values, std::size_t expected, const std::string& name) {
  require(values.size() == expected, "llama2.c export: tensor {} has {} values, expected {}", name,
          values.size(), expected);
}

// `inputs`: what the export reads (the model folder), never replaced.
void check_out(const std::filesystem::path& out, bool replace,
               std::span<const std::filesystem::path> inputs) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(std::filesystem::symlink_status(out, ec));
  require(replace || !exists, "llama2.c export: '{}' exists (not replacing it)", out.string());
  if (exists) {
    // --force replaces only a llama2.c checkpoint (a header that matches the file's size).
    core::check_replaceable_file(out, "llama2.c checkpoint", inputs,
                                 [](const std::filesystem::path& file) -> std::string {
                                   try {
                                     read_llama2c_header(file);
                                     return "";
                                   } catch (const Error& e) {
                                     return fmt::format("it does not read as one ({})", e.what());
                                   }
                                 });
  }
  const std::filesystem::path parent = out.parent_path();
  require(parent.empty() || std::filesystem::is_directory(parent),
          "llama2.c export: the folder of '{}' does not exist", out.string());
}

}  // namespace

Llama2cHeader llama2c_header_for(const LlamaConfig& c, std::string_view source) {
  validate(c, source);
  std::vector<std::string> problems;
  if (c.qkv_bias())
    problems.push_back(c.model_type == ModelType::qwen2
                           ? "q/k/v projection biases (model_type qwen2)"
                           : "attention projection biases (attention_bias)");
  if (c.mlp_bias) problems.push_back("MLP biases (mlp_bias)");
  if (c.rope_scaling.enabled())
    problems.push_back(fmt::format("rope_scaling '{}' (run.c has no RoPE scaling)",
                                   to_string(c.rope_scaling.type)));
  if (c.rope_theta != kLlama2cRopeTheta)
    problems.push_back(fmt::format("rope_theta {} (run.c hard-codes 10000)", c.rope_theta));
  if (c.rms_norm_eps != kLlama2cRmsNormEps)
    problems.push_back(fmt::format("rms_norm_eps {} (run.c hard-codes 1e-5)", c.rms_norm_eps));
  if (c.resolved_head_dim() * c.num_attention_heads != c.hidden_size)
    problems.push_back(fmt::format(
        "head_dim {} with hidden_size {} and {} heads (run.c derives head_dim = dim / n_heads)",
        c.resolved_head_dim(), c.hidden_size, c.num_attention_heads));
  if (const auto window = c.attention_window())
    problems.push_back(
        fmt::format("sliding_window {} (run.c attends to the whole context)", *window));
  const auto fits = [&](std::string_view name, std::int64_t value) {
    if (value > INT32_MAX)
      problems.push_back(fmt::format("{} {} (beyond the int32 header)", name, value));
  };
  fits("hidden_size", c.hidden_size);
  fits("intermediate_size", c.intermediate_size);
  fits("num_hidden_layers", c.num_hidden_layers);
  fits("num_attention_heads", c.num_attention_heads);
  fits("num_key_value_heads", c.num_key_value_heads);
  fits("vocab_size", c.vocab_size);
  fits("max_position_embeddings", c.max_position_embeddings);
  if (!problems.empty())
    fail("{}: cannot be written as a llama2.c checkpoint without changing the model: {}", source,
         fmt::join(problems, "; "));

  Llama2cHeader h;
  h.dim = static_cast<std::int32_t>(c.hidden_size);
  h.hidden_dim = static_cast<std::int32_t>(c.intermediate_size);
  h.n_layers = static_cast<std::int32_t>(c.num_hidden_layers);
  h.n_heads = static_cast<std::int32_t>(c.num_attention_heads);
  h.n_kv_heads = static_cast<std::int32_t>(c.num_key_value_heads);
  h.vocab_size = static_cast<std::int32_t>(c.vocab_size);
  h.seq_len = static_cast<std::int32_t>(c.max_position_embeddings);
  h.shared_classifier = c.tie_word_embeddings;
  return h;
}

Llama2cHeader export_llama2c(const LlamaModel& model, const std::filesystem::path& out,
                             bool replace) {
  const Llama2cHeader h = llama2c_header_for(model.config);
  check_out(out, replace, {});
  const LlamaWeights& w = model.weights;
  require(w.layers.size() == static_cast<std::size_t>(h.n_layers),
          "llama2.c export: {} layers of weights, the config has {}", w.layers.size(), h.n_layers);
  // Every tensor the config calls for with its size; none it does not (biases: llama2.c has
  // none, and the config was checked to ask for none).
  for_each_tensor(
      [](const TensorSpec& spec, const std::vector<float>& values) {
        if (spec.present) {
          check_size(values, static_cast<std::size_t>(spec.numel()), spec.name);
        } else {
          require(values.empty(),
                  "llama2.c export: the weights carry {}, which llama2.c has no "
                  "place for",
                  spec.name);
        }
      },
      tensor_schema(model.config), w);

  CheckpointWriter file(out);
  file.header(h);
  file.floats(w.embed_tokens);
  // Each tensor kind for all layers, in run.c's order (rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
  // w3); wq and wk back in adjacent-pair order.
  const auto each_layer = [&](auto&& write_layer) {
    for (const LlamaLayerWeights& layer : w.layers)
      write_layer(layer);
  };
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.input_norm); });
  std::vector<float> rows;
  each_layer([&](const LlamaLayerWeights& l) {
    rows = l.q_proj;
    unpermute_rotary_rows(rows, h.n_heads, h.head_dim(), h.dim);
    file.floats(rows);
  });
  each_layer([&](const LlamaLayerWeights& l) {
    rows = l.k_proj;
    unpermute_rotary_rows(rows, h.n_kv_heads, h.head_dim(), h.dim);
    file.floats(rows);
  });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.v_proj); });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.o_proj); });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.post_attention_norm); });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.gate_proj); });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.down_proj); });
  each_layer([&](const LlamaLayerWeights& l) { file.floats(l.up_proj); });
  file.floats(w.final_norm);

  // The RoPE tables [seq_len, head_dim / 2], cos then sin, computed in float32 as llama2.c's
  // export.py does (precompute_freqs_cis); run.c skips them.
  const std::size_t half = static_cast<std::size_t>(h.head_dim() / 2);
  std::vector<float> freqs(half);
  for (std::size_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(h.head_dim());
    freqs[i] =
        1.0f / static_cast<float>(std::pow(kLlama2cRopeTheta, static_cast<double>(exponent)));
  }
  for (const bool sine : {false, true}) {
    std::vector<float> row(half);
    for (std::int32_t pos = 0; pos < h.seq_len; ++pos) {
      for (std::size_t i = 0; i < half; ++i) {
        const double angle = static_cast<float>(pos) * freqs[i];  // a float32 product
        row[i] = static_cast<float>(sine ? std::sin(angle) : std::cos(angle));
      }
      file.floats(row);
    }
  }
  if (!h.shared_classifier) file.floats(w.lm_head);
  file.commit();
  return h;
}

Llama2cHeader export_llama2c(const std::filesystem::path& model_dir,
                             const std::filesystem::path& out, bool replace) {
  // The config alone first: a model llama2.c cannot hold is refused before its weights load.
  llama2c_header_for(load_model_config(model_dir), model_dir.string());
  const std::filesystem::path inputs[] = {model_dir};
  check_out(out, replace, inputs);
  return export_llama2c(load_llama_model(model_dir), out, replace);
}

}  // namespace anchorctx::model
