// llama2.c export: random tiny models round-trip exactly through export then import (tied and
// untied classifier, float32 and bf16 folders), the file has run.c's layout and RoPE tables,
// everything run.c cannot reproduce is refused by name, and, with ../shared/data, the real
// stories260K imported then exported gives back llama2.c's own file.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "support/llama2c_tokenizer.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::model {
namespace {

using test::read_file;
using test::TempDir;

LlamaConfig tiny_config(bool tied) {
  LlamaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 16;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

// A model of `config` with random weights (no biases).
LlamaModel random_model(const LlamaConfig& config, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const auto fill = [&](std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v)
      x = dist(rng);
    return v;
  };
  const std::int64_t d = config.hidden_size, h = config.intermediate_size, kv = config.kv_dim(),
                     V = config.vocab_size;
  LlamaModel m;
  m.config = config;
  m.weights.embed_tokens = fill(V * d);
  for (std::int64_t l = 0; l < config.num_hidden_layers; ++l) {
    LlamaLayerWeights layer;
    layer.input_norm = fill(d);
    layer.q_proj = fill(d * d);
    layer.k_proj = fill(kv * d);
    layer.v_proj = fill(kv * d);
    layer.o_proj = fill(d * d);
    layer.post_attention_norm = fill(d);
    layer.gate_proj = fill(h * d);
    layer.up_proj = fill(h * d);
    layer.down_proj = fill(d * h);
    m.weights.layers.push_back(std::move(layer));
  }
  m.weights.final_norm = fill(d);
  if (!config.tie_word_embeddings) m.weights.lm_head = fill(V * d);
  return m;
}

void expect_same_weights(const LlamaWeights& got, const LlamaWeights& want) {
  EXPECT_EQ(got.embed_tokens, want.embed_tokens);
  EXPECT_EQ(got.final_norm, want.final_norm);
  EXPECT_EQ(got.lm_head, want.lm_head);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (std::size_t l = 0; l < want.layers.size(); ++l) {
    const LlamaLayerWeights &g = got.layers[l], &w = want.layers[l];
    EXPECT_EQ(g.input_norm, w.input_norm) << "layer " << l;
    EXPECT_EQ(g.q_proj, w.q_proj) << "layer " << l;
    EXPECT_EQ(g.k_proj, w.k_proj) << "layer " << l;
    EXPECT_EQ(g.v_proj, w.v_proj) << "layer " << l;
    EXPECT_EQ(g.o_proj, w.o_proj) << "layer " << l;
    EXPECT_EQ(g.post_attention_norm, w.post_attention_norm) << "layer " << l;
    EXPECT_EQ(g.gate_proj, w.gate_proj) << "layer " << l;
    EXPECT_EQ(g.up_proj, w.up_proj) << "layer " << l;
    EXPECT_EQ(g.down_proj, w.down_proj) << "layer " << l;
  }
}

using test::llama2c_tokenizer_file;
using test::tiny_llama2c_tokenizer_bytes;

std::int32_t header_value(const std::string& bytes, int index) {
  std::int32_t v;
  std::memcpy(&v, bytes.data() + 4 * index, 4);
  return v;
}

TEST(Llama2cExport, UnpermuteInvertsPermute) {
  // Two heads of head_dim 4, one column, in rotate-half order: back to adjacent pairs.
  std::vector<float> w = {0, 2, 1, 3, 10, 12, 11, 13};
  unpermute_rotary_rows(w, 2, 4, 1);
  EXPECT_EQ(w, (std::vector<float>{0, 1, 2, 3, 10, 11, 12, 13}));

  std::mt19937 rng(3);
  std::vector<float> m(3 * 8 * 5);
  for (float& x : m)
    x = static_cast<float>(rng());
  std::vector<float> copy = m;
  permute_rotary_rows(copy, 3, 8, 5);
  EXPECT_NE(copy, m);
  unpermute_rotary_rows(copy, 3, 8, 5);
  EXPECT_EQ(copy, m);
  EXPECT_THROW(unpermute_rotary_rows(w, 2, 3, 1), Error);
  EXPECT_THROW(unpermute_rotary_rows(w, 3, 4, 1), Error);
}

// export, then import (the folder convert llama2c writes), gives the same weights bit for bit;
// and exporting the imported folder gives the same file.
void expect_round_trip(bool tied) {
  TempDir dir;
  const LlamaModel model = random_model(tiny_config(tied), tied ? 1 : 2);
  const std::filesystem::path file = dir.path() / "tiny.bin";
  const Llama2cHeader h = export_llama2c(model, file);
  EXPECT_EQ(h.shared_classifier, tied);

  const std::string bytes = read_file(file.string());
  const std::int64_t floats = 40 * 32 + 2 * (32 + 2 * 32 * 32 + 2 * 16 * 32 + 32 + 3 * 48 * 32) +
                              32 + 2 * 16 * 4 + (tied ? 0 : 40 * 32);
  EXPECT_EQ(bytes.size(), static_cast<std::size_t>(28 + 4 * floats));
  const std::vector<std::int32_t> want_header = {32, 48, 2, 4, 2, tied ? 40 : -40, 16};
  for (int i = 0; i < 7; ++i)
    EXPECT_EQ(header_value(bytes, i), want_header[static_cast<std::size_t>(i)]) << "header " << i;

  const std::filesystem::path folder = dir.path() / "imported";
  const LlamaConfig imported_config = import_llama2c(
      file, llama2c_tokenizer_file(dir.write("tok.bin", tiny_llama2c_tokenizer_bytes(40))), folder);
  const LlamaModel imported = load_llama_model(folder);
  EXPECT_EQ(imported.config, imported_config);
  EXPECT_EQ(imported.config.hidden_size, 32);
  EXPECT_EQ(imported.config.intermediate_size, 48);
  EXPECT_EQ(imported.config.num_key_value_heads, 2);
  EXPECT_EQ(imported.config.max_position_embeddings, 16);
  EXPECT_EQ(imported.config.tie_word_embeddings, tied);
  expect_same_weights(imported.weights, model.weights);

  const std::filesystem::path again = dir.path() / "again.bin";
  export_llama2c(folder, again);
  EXPECT_EQ(read_file(again.string()), bytes);
}

TEST(Llama2cExport, TiedRandomModelRoundTripsExactly) {
  expect_round_trip(true);
}

TEST(Llama2cExport, UntiedRandomModelRoundTripsExactly) {
  expect_round_trip(false);
}

// The tensors in run.c's order, wq in adjacent-pair rows, then the RoPE tables.
TEST(Llama2cExport, WritesRunCLayoutAndRopeTables) {
  TempDir dir;
  const LlamaModel model = random_model(tiny_config(false), 5);
  const std::filesystem::path file = dir.path() / "m.bin";
  export_llama2c(model, file);
  const std::string bytes = read_file(file.string());
  const auto floats_at = [&](std::size_t offset, std::size_t n) {
    std::vector<float> v(n);
    std::memcpy(v.data(), bytes.data() + 28 + 4 * offset, 4 * n);
    return v;
  };
  std::size_t at = 0;
  EXPECT_EQ(floats_at(at, 40 * 32), model.weights.embed_tokens);
  at += 40 * 32;
  EXPECT_EQ(floats_at(at + 32, 32), model.weights.layers[1].input_norm);
  at += 2 * 32;
  std::vector<float> wq = model.weights.layers[0].q_proj;
  unpermute_rotary_rows(wq, 4, 8, 32);
  EXPECT_EQ(floats_at(at, 32 * 32), wq);
  // Row 1 of head 0 in llama2.c (the second of the first pair) is row 4 (= head_dim / 2) in
  // HuggingFace's layout.
  EXPECT_EQ(floats_at(at + 32, 32),
            std::vector<float>(model.weights.layers[0].q_proj.begin() + 4 * 32,
                               model.weights.layers[0].q_proj.begin() + 5 * 32));
  at += 2 * 32 * 32 + 2 * 2 * 16 * 32 + 2 * 32 * 32 + 2 * 32;            // wq, wk, wv, wo, rms_ffn
  EXPECT_EQ(floats_at(at, 48 * 32), model.weights.layers[0].gate_proj);  // w1
  EXPECT_EQ(floats_at(at + 2 * 48 * 32, 32 * 48), model.weights.layers[0].down_proj);  // w2
  EXPECT_EQ(floats_at(at + 4 * 48 * 32, 48 * 32), model.weights.layers[0].up_proj);    // w3
  at += 6 * 48 * 32;
  EXPECT_EQ(floats_at(at, 32), model.weights.final_norm);
  at += 32;
  const std::vector<float> cos = floats_at(at, 16 * 4), sin = floats_at(at + 16 * 4, 16 * 4);
  for (int pos = 0; pos < 16; ++pos) {
    for (int i = 0; i < 4; ++i) {
      const double angle = pos * std::pow(10000.0, -2.0 * i / 8);
      EXPECT_NEAR(cos[static_cast<std::size_t>(pos * 4 + i)], std::cos(angle), 2e-6);
      EXPECT_NEAR(sin[static_cast<std::size_t>(pos * 4 + i)], std::sin(angle), 2e-6);
    }
  }
  at += 2 * 16 * 4;
  EXPECT_EQ(floats_at(at, 40 * 32), model.weights.lm_head);
  EXPECT_EQ(bytes.size(), 28 + 4 * (at + 40 * 32));
}

// A bf16 folder exports its values widened to float32, exactly.
TEST(Llama2cExport, Bf16FolderExportsItsExactValues) {
  TempDir dir;
  LlamaConfig config = tiny_config(true);
  config.torch_dtype = "bfloat16";
  const LlamaModel model = random_model(config, 9);
  const std::filesystem::path folder = dir.path() / "bf16";
  std::filesystem::create_directories(folder);
  save_config(config, folder / "config.json");
  std::vector<TensorData> tensors;
  const auto add = [&](std::string name, std::vector<std::int64_t> shape,
                       const std::vector<float>& v) {
    tensors.push_back(tensor_from_f32(std::move(name), std::move(shape), v, TensorDtype::bf16));
  };
  add("model.embed_tokens.weight", {40, 32}, model.weights.embed_tokens);
  add("model.norm.weight", {32}, model.weights.final_norm);
  for (std::size_t l = 0; l < 2; ++l) {
    const LlamaLayerWeights& w = model.weights.layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {32}, w.input_norm);
    add(p + "self_attn.q_proj.weight", {32, 32}, w.q_proj);
    add(p + "self_attn.k_proj.weight", {16, 32}, w.k_proj);
    add(p + "self_attn.v_proj.weight", {16, 32}, w.v_proj);
    add(p + "self_attn.o_proj.weight", {32, 32}, w.o_proj);
    add(p + "post_attention_layernorm.weight", {32}, w.post_attention_norm);
    add(p + "mlp.gate_proj.weight", {48, 32}, w.gate_proj);
    add(p + "mlp.up_proj.weight", {48, 32}, w.up_proj);
    add(p + "mlp.down_proj.weight", {32, 48}, w.down_proj);
  }
  write_model_safetensors(folder, tensors);

  const std::filesystem::path file = dir.path() / "bf16.bin";
  export_llama2c(folder, file);
  const Llama2cCheckpoint back = read_llama2c_checkpoint(file);
  const LlamaModel widened = load_llama_model(folder);
  EXPECT_NE(widened.weights.embed_tokens, model.weights.embed_tokens);  // rounded to bf16
  EXPECT_EQ(back.tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(back.tensors.front().data, widened.weights.embed_tokens);
  EXPECT_EQ(back.tensors[2].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(back.tensors[2].data, widened.weights.layers[0].q_proj);
}

// Expects export_llama2c(model) to fail with a message containing each of `fragments`, and no
// file (nor a temporary one) left behind.
void expect_refused(const LlamaModel& model, const std::vector<std::string>& fragments) {
  TempDir dir;
  try {
    export_llama2c(model, dir.path() / "out.bin");
    ADD_FAILURE() << "no error; expected one containing '" << fragments.front() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Llama2cExport, RefusesWhatRunCCannotReproduce) {
  const auto with = [](auto change) {
    LlamaModel m = random_model(tiny_config(true), 4);
    change(m.config);
    return m;
  };
  expect_refused(with([](LlamaConfig& c) { c.attention_bias = true; }),
                 {"cannot be written as a llama2.c checkpoint", "attention_bias"});
  expect_refused(with([](LlamaConfig& c) { c.mlp_bias = true; }), {"mlp_bias"});
  expect_refused(with([](LlamaConfig& c) { c.model_type = ModelType::qwen2; }),
                 {"q/k/v projection biases (model_type qwen2)"});
  expect_refused(with([](LlamaConfig& c) {
                   c.rope_scaling.type = RopeScalingType::linear;
                   c.rope_scaling.factor = 2.0;
                 }),
                 {"rope_scaling 'linear'"});
  expect_refused(with([](LlamaConfig& c) { c.rope_theta = 500000.0; }),
                 {"rope_theta 500000 (run.c hard-codes 10000)"});
  expect_refused(with([](LlamaConfig& c) { c.rms_norm_eps = 1e-6; }),
                 {"rms_norm_eps 1e-06 (run.c hard-codes 1e-5)"});
  expect_refused(with([](LlamaConfig& c) { c.head_dim = 16; }),
                 {"head_dim 16 with hidden_size 32 and 4 heads"});
  expect_refused(with([](LlamaConfig& c) { c.sliding_window = 8; }), {"sliding_window 8"});
  expect_refused(with([](LlamaConfig& c) { c.max_position_embeddings = std::int64_t{1} << 32; }),
                 {"max_position_embeddings 4294967296 is beyond the supported range"});
  // Every problem at once, not just the first.
  expect_refused(with([](LlamaConfig& c) {
                   c.rope_theta = 1e6;
                   c.rms_norm_eps = 1e-6;
                   c.mlp_bias = true;
                 }),
                 {"mlp_bias", "rope_theta", "rms_norm_eps"});
  // The weights must match the config.
  LlamaModel short_layer = random_model(tiny_config(true), 4);
  short_layer.weights.layers[1].up_proj.pop_back();
  expect_refused(short_layer, {"model.layers.1.mlp.up_proj.weight has 1535 values, expected 1536"});
  LlamaModel no_head = random_model(tiny_config(false), 4);
  no_head.weights.lm_head.clear();
  expect_refused(no_head, {"lm_head.weight has 0 values"});
  LlamaModel one_layer = random_model(tiny_config(true), 4);
  one_layer.weights.layers.pop_back();
  expect_refused(one_layer, {"1 layers of weights, the config has 2"});
}

TEST(Llama2cExport, RefusesFromTheConfigBeforeReadingWeights) {
  TempDir dir;
  LlamaConfig config = tiny_config(true);
  config.rope_theta = 500000.0;
  save_config(config, dir.path() / "config.json");  // and no weights at all
  try {
    export_llama2c(dir.path(), dir.path() / "out.bin");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(dir.path().string()), std::string::npos) << message;
    EXPECT_NE(message.find("rope_theta 500000"), std::string::npos) << message;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out.bin"));
  EXPECT_THROW(export_llama2c(dir.path() / "missing", dir.path() / "out.bin"), Error);
}

TEST(Llama2cExport, ReplacesOnlyWhenAsked) {
  TempDir dir;
  const LlamaModel model = random_model(tiny_config(true), 6);
  const std::string existing = dir.write("m.bin", "old");
  EXPECT_THROW(export_llama2c(model, existing), Error);
  EXPECT_EQ(read_file(existing), "old");
  // --force replaces a llama2.c checkpoint only, never a file of another kind (issue 11).
  try {
    export_llama2c(model, existing, /*replace=*/true);
    ADD_FAILURE() << "replaced a file that is not a llama2.c checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a llama2.c checkpoint"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_file(existing), "old");
  const std::filesystem::path checkpoint = dir.path() / "ck.bin";
  export_llama2c(model, checkpoint);
  export_llama2c(model, checkpoint, /*replace=*/true);
  EXPECT_EQ(read_llama2c_checkpoint(checkpoint).header.dim, 32);
  EXPECT_THROW(export_llama2c(model, dir.path() / "no-such-folder" / "m.bin"), Error);
}

// ---- the real model ----

TEST(Llama2cExport, Stories260kExportsBackToLlama2csFile) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(checkpoint, "stories260k/stories260K.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer, "stories260k/tok512.bin");
  TempDir dir;
  const std::filesystem::path folder = dir.path() / "stories260K";
  import_llama2c(checkpoint, llama2c_tokenizer_file(tokenizer), folder);
  const std::filesystem::path file = dir.path() / "stories260K.bin";
  export_llama2c(folder, file);

  const std::string original = read_file(checkpoint);
  const std::string exported = read_file(file.string());
  ASSERT_EQ(exported.size(), original.size());
  // llama2.c's file (export.py --version 0): header, weights, RoPE tables, no classifier (tied).
  // Header and weights come back byte for byte.
  const std::size_t dim = 64, hidden = 172, layers = 5, kv_dim = 32, vocab = 512, seq = 512,
                    half_head = 4;
  const std::size_t weights =
      vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim) + dim;
  const std::size_t tables_at = 28 + 4 * weights;
  ASSERT_EQ(original.size(), tables_at + 4 * 2 * seq * half_head);
  EXPECT_TRUE(exported.compare(0, tables_at, original, 0, tables_at) == 0)
      << "header or weights differ";
  // The RoPE tables (which run.c never reads) were computed by torch in float32, whose cos and
  // sin are not correctly rounded; ours are: the two agree to the last bit (at most 1 ulp).
  std::size_t differing = 0;
  for (std::size_t at = tables_at; at < original.size(); at += 4) {
    std::int32_t a, b;
    std::memcpy(&a, original.data() + at, 4);
    std::memcpy(&b, exported.data() + at, 4);
    EXPECT_LE(std::abs(a - b), 1) << "table float " << (at - tables_at) / 4;
    differing += a != b;
  }
  EXPECT_LT(differing, 2 * seq * half_head / 10);
  std::printf(
      "stories260K: header and %zu weights identical; %zu of %zu RoPE table floats differ "
      "by 1 ulp\n",
      weights, differing, 2 * seq * half_head);
}

}  // namespace
}  // namespace anchorctx::model
