// LlamaConfig: HuggingFace config.json parsing (defaults, rope_scaling of every type, v5's
// rope_parameters), clear errors, the save/load round trip, presets, parameter counts.
#include "anchorctx/model/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::model {
namespace {

using json = nlohmann::json;
using test::TempDir;

// The error message of parse_config(text), or "" when it parses.
std::string parse_error(const std::string& text) {
  try {
    parse_config(text, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A real LLaMA-2-7B config.json, as the Hub serves it.
constexpr const char* kLlama2 = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "tie_word_embeddings": false,
  "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": true,
  "vocab_size": 32000})";

TEST(Config, ParsesLlama2) {
  const LlamaConfig c = parse_config(kLlama2);
  EXPECT_EQ(c.model_type, ModelType::llama);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.rope_scaling.enabled());
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<std::int64_t>{2});
  EXPECT_EQ(c.torch_dtype, "float16");
  EXPECT_FALSE(c.qkv_bias());
  EXPECT_FALSE(c.o_bias());
  EXPECT_EQ(parameter_count(c), 6738415616);  // LLaMA-2-7B, as transformers counts it
}

TEST(Config, ParsesLlama3WithRopeScalingAndEosList) {
  const LlamaConfig c = parse_config(R"({
    "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rope_theta": 500000.0, "tie_word_embeddings": true, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}})");
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::llama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<std::int64_t>{128001, 128008, 128009}));
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(parameter_count(c), 1235814400);  // Llama-3.2-1B
}

TEST(Config, ParsesQwen2AndMistral) {
  const LlamaConfig q = parse_config(R"({
    "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
    "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 32768,
    "bos_token_id": 151643, "eos_token_id": 151643})");
  EXPECT_EQ(q.model_type, ModelType::qwen2);
  EXPECT_TRUE(q.qkv_bias());
  EXPECT_FALSE(q.o_bias());
  EXPECT_FALSE(q.sliding_window.has_value());  // disabled
  EXPECT_EQ(q.head_dim, 64);
  EXPECT_EQ(parameter_count(q), 494032768);  // Qwen2-0.5B

  const LlamaConfig m = parse_config(R"({"model_type": "mistral", "vocab_size": 32000,
    "hidden_size": 4096, "num_hidden_layers": 32, "rope_theta": 1000000.0,
    "sliding_window": null, "attention_bias": true})");
  EXPECT_EQ(m.intermediate_size, 14336);  // MistralConfig's defaults
  EXPECT_EQ(m.num_key_value_heads, 8);
  EXPECT_FALSE(m.sliding_window.has_value());
  EXPECT_FALSE(m.qkv_bias());                 // MistralAttention has no bias whatever the JSON says
  EXPECT_EQ(parameter_count(m), 7241732096);  // Mistral-7B-v0.2

  const LlamaConfig m1 = parse_config(R"({"model_type": "mistral"})");
  EXPECT_EQ(m1.sliding_window, 4096);  // the default when the key is absent
}

TEST(Config, RopeScalingTypes) {
  const auto with = [](const std::string& scaling) {
    return parse_config(R"({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
      "max_position_embeddings": 512, "rope_scaling": )" +
                        scaling + "}")
        .rope_scaling;
  };
  const RopeScaling lin = with(R"({"type": "linear", "factor": 2.0})");  // legacy key
  EXPECT_EQ(lin.type, RopeScalingType::linear);
  EXPECT_DOUBLE_EQ(lin.factor, 2.0);
  const RopeScaling dyn = with(R"({"rope_type": "dynamic", "factor": 4})");
  EXPECT_EQ(dyn.type, RopeScalingType::dynamic);
  EXPECT_DOUBLE_EQ(dyn.factor, 4.0);
  EXPECT_FALSE(dyn.original_max_position_embeddings.has_value());
  const RopeScaling yarn = with(R"({"rope_type": "yarn", "factor": 4.0, "beta_fast": 16,
    "original_max_position_embeddings": 128, "attention_factor": 1.2, "mscale": 0.7})");
  EXPECT_EQ(yarn.type, RopeScalingType::yarn);
  EXPECT_DOUBLE_EQ(yarn.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(yarn.beta_slow, 1.0);
  EXPECT_EQ(yarn.original_max_position_embeddings, 128);
  EXPECT_EQ(yarn.attention_factor, 1.2);
  EXPECT_EQ(yarn.mscale, 0.7);
  EXPECT_FALSE(yarn.mscale_all_dim.has_value());
  EXPECT_FALSE(with(R"({"rope_type": "default"})").enabled());
  EXPECT_FALSE(with("null").enabled());

  // transformers v5: rope_parameters carries the type and theta.
  const LlamaConfig v5 = parse_config(R"({"model_type": "llama", "hidden_size": 64,
    "num_attention_heads": 4, "rope_parameters": {"rope_type": "linear", "factor": 8.0,
    "rope_theta": 123.0}})");
  EXPECT_EQ(v5.rope_scaling.type, RopeScalingType::linear);
  EXPECT_DOUBLE_EQ(v5.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(v5.rope_theta, 123.0);
}

// transformers' Qwen2: with use_sliding_window, layers from max_window_layers on slide unless
// layer_types names each layer's kind; a model whose layers all attend fully has no window to
// refuse, and a saved config slides the same layers as the one read.
TEST(Config, Qwen2SlidingLayersFollowTransformers) {
  const auto qwen2 = [](const std::string& extra) {
    return parse_config(R"({"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
      "vocab_size": 300, "sliding_window": 8)" +
                        extra + "}");
  };
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": true)").attention_window(), std::nullopt)
      << "max_window_layers 28 (the default) >= 2 layers: none slides";
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": true, "max_window_layers": 2)").attention_window(),
            std::nullopt);
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": true, "max_window_layers": 1)").attention_window(), 8);
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": true, "max_window_layers": 0,
                    "layer_types": ["full_attention", "full_attention"])")
                .attention_window(),
            std::nullopt);
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": true, "max_window_layers": 5,
                    "layer_types": ["full_attention", "sliding_attention"])")
                .attention_window(),
            8);
  EXPECT_EQ(qwen2(R"(, "use_sliding_window": false, "max_window_layers": 0)").attention_window(),
            std::nullopt);
  EXPECT_EQ(parse_config(R"({"model_type": "mistral", "sliding_window": 8})").attention_window(),
            8);

  const TempDir dir;
  for (
      const std::string extra :
      {R"(, "use_sliding_window": true, "max_window_layers": 1)",
       R"(, "use_sliding_window": true, "layer_types": ["sliding_attention", "full_attention"])"}) {
    const LlamaConfig c = qwen2(extra);
    save_config(c, dir.path() / "config.json");
    const LlamaConfig back = load_config(dir.path());
    EXPECT_EQ(back, c) << extra;
    EXPECT_EQ(back.attention_window(), 8) << extra;
  }

  EXPECT_NE(parse_error(R"({"model_type": "qwen2", "num_hidden_layers": 2,
                            "layer_types": ["full_attention"]})")
                .find("layer_types lists 1 layers, num_hidden_layers is 2"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "qwen2", "num_hidden_layers": 1,
                            "layer_types": ["chunked_attention"]})")
                .find("'chunked_attention'"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "qwen2", "layer_types": "full_attention"})")
                .find("'layer_types': expected a list of strings"),
            std::string::npos);
}

// Keys anchorctx does not model are written back as read (a checkpoint's config used to lose
// its source's transformers_version and a project's own keys); quantization_config is dropped,
// since the weights anchorctx writes are not quantized.
TEST(Config, KeepsTheKeysItDoesNotModel) {
  const LlamaConfig c = parse_config(R"({"model_type": "llama", "hidden_size": 64,
    "num_attention_heads": 4, "transformers_version": "4.57.0", "my_project": {"tag": [1, 2]},
    "quantization_config": {"bits": 4}, "torch_dtype": "bfloat16", "use_cache": false})");
  const json written = json::parse(config_to_json(c));
  EXPECT_EQ(written["transformers_version"], "4.57.0");
  EXPECT_EQ(written["my_project"], json::parse(R"({"tag": [1, 2]})"));
  EXPECT_FALSE(written.contains("quantization_config"));
  EXPECT_EQ(written["torch_dtype"], "bfloat16");  // modeled keys are written from the struct
  const TempDir dir;
  save_config(c, dir.path() / "config.json");
  EXPECT_EQ(load_config(dir.path()), c);
  EXPECT_EQ(parse_config(R"({"model_type": "llama"})").other_keys, "");
}

// num_key_value_heads null is multi-head attention for every type (Qwen2Config's rule); absent,
// each type's default. attention_dropout and a float64 dtype are kept as read.
TEST(Config, NullKvHeadsDropoutAndDtypeAsTransformers) {
  const LlamaConfig q = parse_config(R"({"model_type": "qwen2", "hidden_size": 64,
    "num_attention_heads": 4, "num_key_value_heads": null, "attention_dropout": 0.1,
    "dtype": "float64"})");
  EXPECT_EQ(q.num_key_value_heads, 4);
  EXPECT_DOUBLE_EQ(q.attention_dropout, 0.1);
  EXPECT_EQ(q.torch_dtype, "float64");
  const json written = json::parse(config_to_json(q));
  EXPECT_DOUBLE_EQ(written["attention_dropout"].get<double>(), 0.1);  // was always 0.0
  EXPECT_EQ(
      parse_config(R"({"model_type": "qwen2", "num_attention_heads": 64})").num_key_value_heads,
      32);  // Qwen2Config's default when absent
  EXPECT_NE(parse_error(R"({"model_type": "llama", "attention_dropout": 1.0})")
                .find("cfg.json: attention_dropout must be in [0, 1), got 1"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "dtype": "int8"})")
                .find("cfg.json: dtype 'int8' (key torch_dtype, or dtype in transformers v5)"),
            std::string::npos);
}

// transformers maps hidden_act "swish" to the same SiLU as "silu".
TEST(Config, AcceptsSwishAsSilu) {
  EXPECT_EQ(parse_error(R"({"model_type": "llama", "hidden_act": "swish"})"), "");
  EXPECT_EQ(parse_config(R"({"model_type": "llama", "hidden_act": "swish"})").hidden_act, "swish");
}

TEST(Config, ErrorsNameTheSourceAndKey) {
  EXPECT_NE(parse_error("{").find("cfg.json: not valid JSON"), std::string::npos);
  // An unmodeled key nested 100000 deep: its recursive copy overflowed the stack (SIGSEGV).
  const std::string deep = R"({"model_type": "llama", "x": )" + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  EXPECT_NE(parse_error(deep).find("cfg.json: JSON nested deeper than"), std::string::npos);
  EXPECT_NE(parse_error("[1]").find("expected a JSON object"), std::string::npos);
  // What only the RoPE tables check fails at load, naming the file (it failed at the first
  // forward without it); positions are int32 and the tables float32.
  EXPECT_NE(parse_error(R"({"model_type": "llama", "rope_scaling": {"rope_type": "yarn",
                            "factor": 4, "attention_factor": -1}})")
                .find("cfg.json: rope_scaling (yarn): attention factor must be positive"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "max_position_embeddings": 4294967296})")
                .find("cfg.json: max_position_embeddings 4294967296 is beyond"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "rope_theta": 1e300})")
                .find("cfg.json: rope_theta 1e+300 is beyond float32's range"),
            std::string::npos);
  EXPECT_NE(parse_error("{}").find("'model_type' is required"), std::string::npos);
  const std::string gpt2 = parse_error(R"({"model_type": "gpt2"})");
  EXPECT_NE(gpt2.find("cfg.json"), std::string::npos) << gpt2;
  EXPECT_NE(gpt2.find("unsupported model type 'gpt2'"), std::string::npos) << gpt2;
  const std::string bad = parse_error(R"({"model_type": "llama", "hidden_size": "big"})");
  EXPECT_NE(bad.find("cfg.json: key 'hidden_size': expected an integer"), std::string::npos) << bad;
  EXPECT_NE(parse_error(R"({"model_type": "llama", "hidden_size": 64.5})").find("hidden_size"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "tie_word_embeddings": 1})")
                .find("'tie_word_embeddings': expected a boolean"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "hidden_size": 100, "num_attention_heads": 3})")
                .find("not divisible"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "num_attention_heads": 32,
                            "num_key_value_heads": 5})")
                .find("not a multiple of num_key_value_heads"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "hidden_act": "gelu"})").find("gelu"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "rope_scaling": {"rope_type": "su",
                            "factor": 2}})")
                .find("'rope_scaling.rope_type': unknown RoPE scaling type 'su'"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "rope_scaling": {"rope_type": "linear"}})")
                .find("'rope_scaling.factor' is required"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "rope_scaling": {"rope_type": "llama3",
                            "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4}})")
                .find("original_max_position_embeddings"),
            std::string::npos);
  EXPECT_NE(
      parse_error(R"({"model_type": "llama", "rope_scaling": {"factor": 2}})").find("rope_type"),
      std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "vocab_size": -3})").find("vocab_size"),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"model_type": "llama", "torch_dtype": "int8"})").find("torch_dtype"),
            std::string::npos);
}

TEST(Config, LoadNamesTheMissingFile) {
  const TempDir dir;
  try {
    load_config(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

// A folder named config.json is not a config; it used to be read as empty text, "not valid JSON".
TEST(Config, LoadRefusesAConfigThatIsAFolder) {
  const TempDir dir;
  std::filesystem::create_directories(dir.path() / "config.json");
  try {
    load_config(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: not a regular file"), std::string::npos)
        << e.what();
  }
}

TEST(Config, SaveLoadRoundTrip) {
  const TempDir dir;
  std::vector<LlamaConfig> configs = {preset("tiny"), preset("reference")};
  LlamaConfig yarn = preset("tiny");
  yarn.model_type = ModelType::qwen2;
  yarn.attention_bias = true;
  yarn.sliding_window = 1024;
  yarn.rope_scaling.type = RopeScalingType::yarn;
  yarn.rope_scaling.factor = 4.0;
  yarn.rope_scaling.original_max_position_embeddings = 1024;
  yarn.rope_scaling.attention_factor = 1.1;
  yarn.rope_scaling.truncate = false;
  yarn.rms_norm_eps = 1.0e-6;
  yarn.torch_dtype = "bfloat16";
  configs.push_back(yarn);
  LlamaConfig l3 = preset("reference");
  l3.rope_theta = 500000.0;
  l3.rope_scaling.type = RopeScalingType::llama3;
  l3.rope_scaling.factor = 8.0;
  l3.rope_scaling.original_max_position_embeddings = 8192;
  l3.eos_token_ids = {5, 6, 7};
  l3.bos_token_id.reset();
  l3.tie_word_embeddings = true;
  l3.attention_bias = true;
  l3.head_dim = 96;  // explicit, not hidden/heads
  configs.push_back(l3);
  LlamaConfig mistral = preset("tiny");
  mistral.model_type = ModelType::mistral;
  mistral.sliding_window.reset();
  mistral.rope_scaling.type = RopeScalingType::dynamic;
  mistral.rope_scaling.factor = 2.0;
  configs.push_back(mistral);

  for (const LlamaConfig& c : configs) {
    const auto path = dir.path() / "config.json";
    save_config(c, path);
    const LlamaConfig back = load_config(dir.path());  // the folder form
    EXPECT_EQ(back, c) << config_to_json(c);
    // Exactly what transformers needs to pick the class.
    const json j = json::parse(test::read_file(path.string()));
    EXPECT_EQ(j["model_type"], std::string(to_string(c.model_type)));
    EXPECT_EQ(j["architectures"].size(), 1u);
  }
  // No temporary file is left beside it.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path()))
    ++files;
  EXPECT_EQ(files, 1);
}

TEST(Config, SaveRefusesInvalidConfigs) {
  const TempDir dir;
  LlamaConfig c = preset("tiny");
  c.num_key_value_heads = 3;
  EXPECT_THROW(save_config(c, dir.path() / "config.json"), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "config.json"));
}

TEST(Config, Presets) {
  const LlamaConfig tiny = preset("tiny");
  EXPECT_EQ(tiny.hidden_size, 128);
  EXPECT_EQ(tiny.num_hidden_layers, 4);
  EXPECT_EQ(tiny.num_attention_heads, 4);
  EXPECT_EQ(tiny.num_key_value_heads, 2);
  EXPECT_EQ(tiny.intermediate_size, 352);
  EXPECT_EQ(tiny.vocab_size, 259);
  EXPECT_EQ(tiny.head_dim, 32);
  EXPECT_DOUBLE_EQ(tiny.rope_theta, 10000.0);
  // 2 * 259*128 embeddings/head + 4 * (q 128*128 + k,v 2*128*64 + o 128*128 + mlp 3*128*352
  // + norms 2*128) + final norm 128
  EXPECT_EQ(parameter_count(tiny),
            2 * 259 * 128 + 4 * (2 * 128 * 128 + 2 * 128 * 64 + 3 * 128 * 352 + 256) + 128);
  const LlamaConfig ref = preset("reference");
  EXPECT_EQ(ref.hidden_size, 512);
  EXPECT_EQ(ref.num_hidden_layers, 8);
  EXPECT_EQ(ref.num_attention_heads, 8);
  EXPECT_EQ(ref.num_key_value_heads, 2);
  EXPECT_EQ(ref.intermediate_size, 1408);
  EXPECT_EQ(ref.vocab_size, 32000);
  EXPECT_EQ(ref.max_position_embeddings, 4096);
  const LlamaConfig small = preset("small");
  EXPECT_EQ(small.head_dim, 64);
  EXPECT_EQ(small.vocab_size, 259);
  // 10-30M parameters, the size the study (docs/STUDY.md) asks for.
  EXPECT_EQ(parameter_count(small),
            2 * 259 * 384 + 6 * (2 * 384 * 384 + 2 * 384 * 128 + 3 * 384 * 1152 + 768) + 384);
  // The paper's models, as their HF config.json files say: LLaMA-2-7B has 6 738 415 616
  // parameters (transformers' num_parameters()), LLaMA-3-8B 8 030 261 248.
  EXPECT_EQ(parameter_count(preset("llama2-7b")), 6738415616);
  EXPECT_EQ(parameter_count(preset("llama3-8b")), 8030261248);
  EXPECT_EQ(preset("llama3-8b").num_key_value_heads, 8);
  EXPECT_EQ(preset_names(),
            (std::vector<std::string>{"tiny", "reference", "small", "llama2-7b", "llama3-8b"}));
  try {
    preset("huge");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny, reference"), std::string::npos);
  }
}

}  // namespace
}  // namespace anchorctx::model
