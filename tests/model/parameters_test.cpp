// ParameterLayout: counts equal transformers' num_parameters(), names and shapes are what
// load_llama_weights (and so transformers) expects, slices are 64-byte aligned with zero
// padding, init_parameters draws transformers' distributions reproducibly, and load_parameters
// round-trips and names the file and tensor in its errors.
#include "anchorctx/model/parameters.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::model {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Qwen2 with q/k/v biases and a tied LM head.
LlamaConfig qwen2_tied() {
  LlamaConfig c = preset("tiny");
  c.model_type = ModelType::qwen2;
  c.tie_word_embeddings = true;
  c.vocab_size = 301;
  c.intermediate_size = 200;
  c.num_hidden_layers = 3;
  return c;
}

// Llama with every optional bias (q/k/v/o and MLP) and an explicit head_dim != hidden/heads.
LlamaConfig llama_all_biases() {
  LlamaConfig c = preset("tiny");
  c.attention_bias = true;
  c.mlp_bias = true;
  c.head_dim = 48;
  c.num_hidden_layers = 2;
  return c;
}

std::vector<LlamaConfig> small_configs() {
  return {preset("tiny"), qwen2_tied(), llama_all_biases()};
}

// Every element outside the slices.
std::vector<std::size_t> padding_indices(const ParameterLayout& layout) {
  std::vector<bool> used(layout.total(), false);
  for (const ParameterInfo& p : layout.params())
    std::fill_n(used.begin() + static_cast<std::ptrdiff_t>(p.offset), p.size, true);
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < used.size(); ++i)
    if (!used[i]) out.push_back(i);
  return out;
}

using test::error_of;

TEST(ParameterLayout, CountEqualsParameterCount) {
  std::vector<LlamaConfig> configs = small_configs();
  configs.push_back(preset("reference"));
  for (const LlamaConfig& c : configs) {
    const ParameterLayout layout = ParameterLayout::for_config(c);
    EXPECT_EQ(layout.count(), parameter_count(c)) << to_string(c.model_type);
    EXPECT_GE(layout.total(), static_cast<std::size_t>(layout.count()));
    EXPECT_EQ(layout.total() % 16, 0u);
  }
  // The reference preset by hand: embedding and LM head 2 x 32000 x 512, per layer q/o 512 x 512,
  // k/v 128 x 512, gate/up/down 1408 x 512, two norms; the final norm.
  EXPECT_EQ(ParameterLayout::for_config(preset("reference")).count(),
            2 * 32000 * 512 + 8 * (2 * 512 * 512 + 2 * 128 * 512 + 3 * 1408 * 512 + 2 * 512) + 512);
}

TEST(ParameterLayout, SlicesAlignedOrderedDisjoint) {
  for (const LlamaConfig& c : small_configs()) {
    const ParameterLayout layout = ParameterLayout::for_config(c);
    std::size_t end = 0;
    std::set<std::string> names;
    for (const ParameterInfo& p : layout.params()) {
      EXPECT_EQ(p.offset % 16, 0u) << p.name;
      EXPECT_GE(p.offset, end) << p.name;
      EXPECT_LT(p.offset - end, 16u) << p.name;  // no more padding than alignment needs
      std::int64_t n = 1;
      for (const std::int64_t d : p.shape)
        n *= d;
      EXPECT_EQ(static_cast<std::size_t>(n), p.size) << p.name;
      EXPECT_EQ(p.decay, p.shape.size() == 2) << p.name;
      EXPECT_TRUE(names.insert(p.name).second) << "duplicate " << p.name;
      end = p.offset + p.size;
    }
    EXPECT_LE(end, layout.total());
    EXPECT_LT(layout.total() - end, 16u);
  }
}

TEST(ParameterLayout, NamesShapesAndOrder) {
  const LlamaConfig c = qwen2_tied();
  const ParameterLayout layout = ParameterLayout::for_config(c);
  const std::vector<std::string> first = {
      "model.embed_tokens.weight",
      "model.layers.0.input_layernorm.weight",
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.q_proj.bias",
      "model.layers.0.self_attn.k_proj.weight",
      "model.layers.0.self_attn.k_proj.bias",
      "model.layers.0.self_attn.v_proj.weight",
      "model.layers.0.self_attn.v_proj.bias",
      "model.layers.0.self_attn.o_proj.weight",  // Qwen2: no o_proj bias
      "model.layers.0.post_attention_layernorm.weight",
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.input_layernorm.weight",
  };
  ASSERT_GT(layout.params().size(), first.size());
  for (std::size_t i = 0; i < first.size(); ++i)
    EXPECT_EQ(layout.params()[i].name, first[i]);
  EXPECT_EQ(layout.params().back().name, "model.norm.weight");  // tied: no lm_head
  EXPECT_EQ(layout.find("lm_head.weight"), nullptr);
  EXPECT_EQ(layout.params().size(), 1 + 3 * 12 + 1u);

  const std::int64_t h = c.hidden_size;
  EXPECT_EQ(layout.at("model.embed_tokens.weight").shape, (std::vector<std::int64_t>{301, h}));
  EXPECT_EQ(layout.at("model.layers.2.self_attn.k_proj.weight").shape,
            (std::vector<std::int64_t>{c.kv_dim(), h}));
  EXPECT_EQ(layout.at("model.layers.2.self_attn.o_proj.weight").shape,
            (std::vector<std::int64_t>{h, c.q_dim()}));
  EXPECT_EQ(layout.at("model.layers.1.mlp.down_proj.weight").shape,
            (std::vector<std::int64_t>{h, 200}));
  EXPECT_EQ(layout.at("model.layers.1.self_attn.v_proj.bias").shape,
            (std::vector<std::int64_t>{c.kv_dim()}));
  EXPECT_FALSE(layout.at("model.layers.1.self_attn.v_proj.bias").decay);
  EXPECT_TRUE(layout.at("model.embed_tokens.weight").decay);

  const ParameterLayout all = ParameterLayout::for_config(llama_all_biases());
  EXPECT_NE(all.find("model.layers.1.self_attn.o_proj.bias"), nullptr);
  EXPECT_NE(all.find("model.layers.1.mlp.down_proj.bias"), nullptr);
  EXPECT_EQ(all.at("model.layers.0.self_attn.q_proj.weight").shape,
            (std::vector<std::int64_t>{4 * 48, 128}));
  EXPECT_TRUE(all.at("lm_head.weight").decay);

  const std::string message = error_of([&] { (void)layout.at("lm_head.weight"); });
  EXPECT_NE(message.find("'lm_head.weight'"), std::string::npos) << message;
}

// What the layout names is exactly what load_llama_weights reads: a folder written from the
// slices loads with load_llama_model, every tensor equal to its slice, nothing left over.
TEST(ParameterLayout, FolderLoadsWithLoadLlamaModel) {
  for (const LlamaConfig& c : small_configs()) {
    const TempDir dir;
    const ParameterLayout layout = ParameterLayout::for_config(c);
    std::vector<float> params(layout.total());
    init_parameters(layout, c, 7, params);
    // Biases and norms get distinct values so that a swapped slice would show.
    for (const ParameterInfo& p : layout.params()) {
      if (p.shape.size() == 1) {
        for (std::size_t i = 0; i < p.size; ++i)
          params[p.offset + i] = 0.001f * static_cast<float>(i) + static_cast<float>(p.offset);
      }
    }
    std::vector<TensorData> tensors;
    for (const ParameterInfo& p : layout.params())
      tensors.push_back(
          tensor_from_f32(p.name, p.shape, std::span(params).subspan(p.offset, p.size)));
    save_config(c, dir.path() / "config.json");
    write_model_safetensors(dir.path(), tensors);

    const LlamaModel model = load_llama_model(dir.path());
    const LlamaWeights& w = model.weights;
    const auto slice = [&](const std::string& name) {
      const ParameterInfo& p = layout.at(name);
      return std::vector<float>(params.begin() + static_cast<std::ptrdiff_t>(p.offset),
                                params.begin() + static_cast<std::ptrdiff_t>(p.offset + p.size));
    };
    EXPECT_EQ(w.embed_tokens, slice("model.embed_tokens.weight"));
    EXPECT_EQ(w.final_norm, slice("model.norm.weight"));
    if (c.tie_word_embeddings) {
      EXPECT_TRUE(w.lm_head.empty());
    } else {
      EXPECT_EQ(w.lm_head, slice("lm_head.weight"));
    }
    std::size_t loaded = 3 - (c.tie_word_embeddings ? 1 : 0);
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const LlamaLayerWeights& L = w.layers[l];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const std::vector<std::pair<const std::vector<float>*, std::string>> pairs = {
          {&L.input_norm, "input_layernorm.weight"},
          {&L.q_proj, "self_attn.q_proj.weight"},
          {&L.k_proj, "self_attn.k_proj.weight"},
          {&L.v_proj, "self_attn.v_proj.weight"},
          {&L.o_proj, "self_attn.o_proj.weight"},
          {&L.q_bias, "self_attn.q_proj.bias"},
          {&L.k_bias, "self_attn.k_proj.bias"},
          {&L.v_bias, "self_attn.v_proj.bias"},
          {&L.o_bias, "self_attn.o_proj.bias"},
          {&L.post_attention_norm, "post_attention_layernorm.weight"},
          {&L.gate_proj, "mlp.gate_proj.weight"},
          {&L.up_proj, "mlp.up_proj.weight"},
          {&L.down_proj, "mlp.down_proj.weight"},
          {&L.gate_bias, "mlp.gate_proj.bias"},
          {&L.up_bias, "mlp.up_proj.bias"},
          {&L.down_bias, "mlp.down_proj.bias"},
      };
      for (const auto& [vec, suffix] : pairs) {
        if (layout.find(p + suffix) == nullptr) {
          EXPECT_TRUE(vec->empty()) << p + suffix;
          continue;
        }
        EXPECT_EQ(*vec, slice(p + suffix)) << p + suffix;
        ++loaded;
      }
    }
    EXPECT_EQ(loaded, layout.params().size());  // every slice was read by the loader

    // And back through load_parameters: the same bits, padding zero.
    std::vector<float> again(layout.total(), std::numeric_limits<float>::quiet_NaN());
    load_parameters(SafetensorsReader::open(dir.path()), layout, again);
    EXPECT_EQ(std::memcmp(again.data(), params.data(), params.size() * sizeof(float)), 0);
  }
}

TEST(ParameterLayout, InitStatistics) {
  LlamaConfig c = preset("tiny");
  c.initializer_range = 0.05;
  c.attention_bias = true;
  c.mlp_bias = true;
  const ParameterLayout layout = ParameterLayout::for_config(c);
  std::vector<float> params(layout.total(), std::numeric_limits<float>::quiet_NaN());
  init_parameters(layout, c, 1234, params);
  const std::size_t pad_row = static_cast<std::size_t>(*c.pad_token_id);
  for (const ParameterInfo& p : layout.params()) {
    const std::span<const float> s = std::span(params).subspan(p.offset, p.size);
    if (p.shape.size() == 2) {
      double sum = 0, sum2 = 0;
      std::size_t n = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (p.name == "model.embed_tokens.weight" &&
            i / static_cast<std::size_t>(c.hidden_size) == pad_row) {
          EXPECT_EQ(s[i], 0.0f) << "pad row, " << i;  // transformers zeroes padding_idx
          continue;
        }
        sum += s[i];
        sum2 += static_cast<double>(s[i]) * s[i];
        ++n;
      }
      const double mean = sum / static_cast<double>(n);
      const double sd = std::sqrt(sum2 / static_cast<double>(n) - mean * mean);
      // 5 standard errors: the mean's is sd / sqrt(n), the std's about sd / sqrt(2n).
      EXPECT_LT(std::abs(mean), 5 * 0.05 / std::sqrt(static_cast<double>(n))) << p.name;
      EXPECT_LT(std::abs(sd - 0.05), 5 * 0.05 / std::sqrt(2.0 * static_cast<double>(n))) << p.name;
    } else {
      const float want = p.name.ends_with(".bias") ? 0.0f : 1.0f;
      for (const float x : s)
        ASSERT_EQ(x, want) << p.name;
    }
  }
  for (const std::size_t i : padding_indices(layout))
    ASSERT_EQ(std::bit_cast<std::uint32_t>(params[i]), 0u) << "padding element " << i;

  // The whole stream: normal to within a few standard errors in the tails too.
  std::size_t beyond2 = 0, total = 0;
  for (const ParameterInfo& p : layout.params()) {
    if (p.shape.size() != 2) continue;
    for (std::size_t i = 0; i < p.size; ++i, ++total)
      beyond2 += std::abs(params[p.offset + i]) > 0.1f;
  }
  const double frac = static_cast<double>(beyond2) / static_cast<double>(total);
  EXPECT_NEAR(frac, 0.0455, 0.003);  // P(|z| > 2)
}

TEST(ParameterLayout, InitIsReproducible) {
  const LlamaConfig c = qwen2_tied();
  const ParameterLayout layout = ParameterLayout::for_config(c);
  std::vector<float> a(layout.total(), 1.0f), b(layout.total(), -1.0f), d(layout.total());
  init_parameters(layout, c, 42, a);
  init_parameters(layout, c, 42, b);
  init_parameters(layout, c, 43, d);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.data(), d.data(), a.size() * sizeof(float)), 0);

  // Pinned values: the algorithm (mt19937_64, Box-Muller cos then sin, draws in layout order)
  // is part of the contract; a change here changes every seeded model.
  const LlamaConfig tiny = preset("tiny");
  const ParameterLayout tl = ParameterLayout::for_config(tiny);
  std::vector<float> t(tl.total());
  init_parameters(tl, tiny, 0, t);
  const std::vector<std::uint32_t> pinned = {0x3d1cb26bu, 0xbaf7ac29u, 0xbd2a5858u,
                                             0xbcef6c8cu, 0x3ca9b189u, 0x3bfed49fu};
  for (std::size_t i = 0; i < pinned.size(); ++i)
    EXPECT_EQ(std::bit_cast<std::uint32_t>(t[i]), pinned[i]) << i << ": " << t[i];
  // The first value of layer 0's q_proj continues the same stream after the embedding.
  const ParameterInfo& q = tl.at("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(std::bit_cast<std::uint32_t>(t[q.offset]), 0xbc48d991u) << t[q.offset];

  EXPECT_NE(error_of([&] { init_parameters(layout, c, 1, std::span(a).first(10)); }), "");
}

TEST(ParameterLayout, LoadParametersErrorsNameFileAndTensor) {
  const TempDir dir;
  LlamaConfig c = preset("tiny");
  c.num_hidden_layers = 1;
  const ParameterLayout layout = ParameterLayout::for_config(c);
  std::vector<float> params(layout.total());
  init_parameters(layout, c, 3, params);
  const auto write = [&](const std::string& file, const std::string& skip,
                         const std::string& reshape, TensorDtype dtype) {
    std::vector<TensorData> tensors;
    for (const ParameterInfo& p : layout.params()) {
      if (p.name == skip) continue;
      std::vector<std::int64_t> shape = p.shape;
      if (p.name == reshape) std::swap(shape[0], shape[1]);
      tensors.push_back(
          tensor_from_f32(p.name, shape, std::span(params).subspan(p.offset, p.size), dtype));
    }
    write_safetensors(dir.path() / file, tensors);
    return (dir.path() / file).string();
  };
  std::vector<float> out(layout.total());

  const std::string missing =
      write("missing.safetensors", "model.layers.0.mlp.up_proj.weight", "", TensorDtype::f32);
  std::string e = error_of([&] { load_parameters(SafetensorsReader::open(missing), layout, out); });
  EXPECT_NE(e.find(missing), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0.mlp.up_proj.weight"), std::string::npos) << e;

  const std::string bad =
      write("shape.safetensors", "", "model.layers.0.mlp.down_proj.weight", TensorDtype::f32);
  e = error_of([&] { load_parameters(SafetensorsReader::open(bad), layout, out); });
  EXPECT_NE(e.find(bad), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0.mlp.down_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("shape [352, 128], expected [128, 352]"), std::string::npos) << e;

  e = error_of(
      [&] { load_parameters(SafetensorsReader::open(missing), layout, std::span(out).first(5)); });
  EXPECT_NE(e.find(missing), std::string::npos) << e;

  // bf16 on disk widens exactly: the loaded values are the bf16-rounded ones.
  const std::string bf16 = write("bf16.safetensors", "", "", TensorDtype::bf16);
  load_parameters(SafetensorsReader::open(bf16), layout, out);
  const ParameterInfo& q = layout.at("model.layers.0.self_attn.q_proj.weight");
  for (std::size_t i = 0; i < 8; ++i) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(out[q.offset + i]);
    EXPECT_EQ(bits & 0xffffu, 0u);
    EXPECT_NEAR(out[q.offset + i], params[q.offset + i], 0.01 * 0.02 + 1e-6);
  }

  // A tied layout ignores a stray lm_head.weight (reconcile_tied_head decides, from the
  // values, whether a model folder's config is tied; see the next test).
  LlamaConfig tied = c;
  tied.tie_word_embeddings = true;
  const ParameterLayout tl = ParameterLayout::for_config(tied);
  std::vector<float> tout(tl.total());
  const std::string full = write("full.safetensors", "", "", TensorDtype::f32);
  load_parameters(SafetensorsReader::open(full), tl, tout);
  EXPECT_EQ(tout[tl.at("model.norm.weight").offset], 1.0f);
}

// transformers' rule for a tied config whose file also holds lm_head.weight: a copy of the
// embedding (in any dtype) keeps the model tied; a different head unties it and is used.
TEST(ParameterLayout, TiedConfigWithADifferentHeadLoadsUntiedAsTransformers) {
  const TempDir dir;
  LlamaConfig untied = preset("tiny");
  untied.num_hidden_layers = 1;
  LlamaConfig tied = untied;
  tied.tie_word_embeddings = true;
  const ParameterLayout layout = ParameterLayout::for_config(untied);
  std::vector<float> params(layout.total());
  init_parameters(layout, untied, 9, params);
  const ParameterInfo& embed = layout.at("model.embed_tokens.weight");
  const ParameterInfo& head = layout.at("lm_head.weight");
  // An embedding of bf16 values, so that a bf16 copy of it holds the same values.
  const std::span<float> embed_values = std::span(params).subspan(embed.offset, embed.size);
  for (float& v : embed_values)
    v = core::round_to_bf16(v);
  // A tied config.json over every tensor, lm_head.weight being `head_values` in `dtype`.
  const auto write_folder = [&](const std::string& name, std::span<const float> head_values,
                                TensorDtype dtype) {
    const fs::path folder = dir.path() / name;
    fs::create_directories(folder);
    std::vector<TensorData> tensors;
    for (const ParameterInfo& p : layout.params())
      tensors.push_back(
          p.name == head.name
              ? tensor_from_f32(p.name, p.shape, head_values, dtype)
              : tensor_from_f32(p.name, p.shape, std::span(params).subspan(p.offset, p.size)));
    save_config(tied, folder / "config.json");
    write_model_safetensors(folder, tensors);
    return folder;
  };

  const fs::path different = write_folder(
      "different", std::span(params).subspan(head.offset, head.size), TensorDtype::f32);
  EXPECT_FALSE(load_model_config(different).tie_word_embeddings);
  const LlamaModel model = load_llama_model(different);
  EXPECT_FALSE(model.config.tie_word_embeddings);
  EXPECT_EQ(
      model.weights.lm_head,
      std::vector<float>(params.begin() + static_cast<std::ptrdiff_t>(head.offset),
                         params.begin() + static_cast<std::ptrdiff_t>(head.offset + head.size)));
  EXPECT_EQ(&model.weights.output_matrix(), &model.weights.lm_head);

  // A copy of the embedding stays tied, also when stored in another dtype with the same values.
  for (const auto& [name, dtype] :
       {std::pair{"copy", TensorDtype::f32}, std::pair{"copy_bf16", TensorDtype::bf16}}) {
    const fs::path folder = write_folder(name, embed_values, dtype);
    EXPECT_TRUE(load_model_config(folder).tie_word_embeddings) << name;
    const LlamaModel copy = load_llama_model(folder);
    EXPECT_TRUE(copy.config.tie_word_embeddings) << name;
    EXPECT_TRUE(copy.weights.lm_head.empty()) << name;
  }

  // A tied model whose one matrix is stored as lm_head.weight alone (no embedding tensor):
  // transformers fills the embedding from it; both loaders do too (they refused, naming the
  // missing model.embed_tokens.weight).
  const fs::path head_only = dir.path() / "head_only";
  fs::create_directories(head_only);
  std::vector<TensorData> tensors;
  for (const ParameterInfo& p : layout.params())
    if (p.name != embed.name)
      tensors.push_back(tensor_from_f32(
          p.name, p.shape,
          p.name == head.name ? embed_values : std::span(params).subspan(p.offset, p.size)));
  save_config(tied, head_only / "config.json");
  write_model_safetensors(head_only, tensors);
  const LlamaModel loaded = load_llama_model(head_only);
  EXPECT_TRUE(loaded.config.tie_word_embeddings);
  EXPECT_TRUE(std::equal(embed_values.begin(), embed_values.end(),
                         loaded.weights.embed_tokens.begin(), loaded.weights.embed_tokens.end()));
  const ParameterLayout tied_layout = ParameterLayout::for_config(tied);
  const std::vector<float> flat = load_parameters(head_only, tied_layout);
  const ParameterInfo& tied_embed = tied_layout.at(embed.name);
  EXPECT_TRUE(std::equal(embed_values.begin(), embed_values.end(),
                         flat.begin() + static_cast<std::ptrdiff_t>(tied_embed.offset)));
}

// A model whose weights hold a NaN or an infinity, or whose file holds tensors its config does
// not call for (a config with fewer layers than the weights), is refused by both loaders, the
// tensor named (issue 11: both loaded without a word).
TEST(ParameterLayout, LoadersRefuseNonFiniteAndUnusedTensors) {
  const TempDir dir;
  LlamaConfig c = preset("tiny");
  c.num_hidden_layers = 2;
  const ParameterLayout layout = ParameterLayout::for_config(c);
  std::vector<float> params(layout.total());
  init_parameters(layout, c, 5, params);
  // Writes a model folder of `params` plus `extra` tensors.
  const auto write_folder = [&](const std::string& name, const std::vector<float>& values,
                                const std::vector<std::string>& extra) {
    const std::filesystem::path folder = dir.path() / name;
    std::filesystem::create_directories(folder);
    std::vector<TensorData> tensors;
    for (const ParameterInfo& p : layout.params())
      tensors.push_back(
          tensor_from_f32(p.name, p.shape, std::span(values).subspan(p.offset, p.size)));
    const std::vector<float> small(4, 1.0f);
    for (const std::string& e : extra)
      tensors.push_back(tensor_from_f32(e, {4}, small));
    save_config(c, folder / "config.json");
    write_model_safetensors(folder, tensors);
    return folder;
  };
  std::vector<float> out(layout.total());
  const auto both_refuse = [&](const std::filesystem::path& folder,
                               const std::vector<std::string>& fragments) {
    const std::string e1 =
        error_of([&] { load_parameters(SafetensorsReader::open(folder), layout, out); });
    const std::string e2 = error_of([&] { load_llama_model(folder); });
    for (const std::string& f : fragments) {
      EXPECT_NE(e1.find(f), std::string::npos) << "load_parameters: " << e1;
      EXPECT_NE(e2.find(f), std::string::npos) << "load_llama_model: " << e2;
    }
  };

  const ParameterInfo& down = layout.at("model.layers.1.mlp.down_proj.weight");
  for (const float bad :
       {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    std::vector<float> damaged = params;
    damaged[down.offset + 17] = bad;
    damaged[down.offset + 40] = bad;
    both_refuse(write_folder("nonfinite", damaged, {}),
                {"model.layers.1.mlp.down_proj.weight", "2 non-finite value(s)", "element 17"});
  }
  // A file with a third layer under a two-layer config.
  both_refuse(
      write_folder("deeper", params,
                   {"model.layers.2.mlp.up_proj.weight", "model.layers.2.input_layernorm.weight"}),
      {"2 tensor(s) the config does not call for", "model.layers.2.input_layernorm.weight",
       "model.layers.2.mlp.up_proj.weight"});
  // Buffers transformers recomputes are no weights: allowed.
  const auto with_inv_freq =
      write_folder("inv_freq", params, {"model.layers.0.self_attn.rotary_emb.inv_freq"});
  load_parameters(SafetensorsReader::open(with_inv_freq), layout, out);
  EXPECT_EQ(load_llama_model(with_inv_freq).weights.layers.size(), 2u);
}

}  // namespace
}  // namespace anchorctx::model
