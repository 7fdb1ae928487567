// LlamaConfig <-> HuggingFace config.json, presets, parameter count.
#include "anchorctx/model/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::model {
namespace {

// transformers' names for a layer's attention in Qwen2's layer_types.
constexpr const char* kFullAttention = "full_attention";
constexpr const char* kSlidingAttention = "sliding_attention";

using json = nlohmann::json;

// The config.json keys anchorctx models (read, or written by config_to_json). Every other key
// is kept as read and written back, so that a checkpoint's config says what its source's did
// (transformers_version, auto_map, a project's own keys), except the ones that would be false of
// the float weights anchorctx writes.
constexpr std::string_view kModeledKeys[] = {"architectures",
                                             "model_type",
                                             "vocab_size",
                                             "hidden_size",
                                             "intermediate_size",
                                             "num_hidden_layers",
                                             "num_attention_heads",
                                             "num_key_value_heads",
                                             "head_dim",
                                             "max_position_embeddings",
                                             "rms_norm_eps",
                                             "rope_theta",
                                             "rope_scaling",
                                             "rope_parameters",
                                             "tie_word_embeddings",
                                             "hidden_act",
                                             "initializer_range",
                                             "attention_dropout",
                                             "use_cache",
                                             "bos_token_id",
                                             "eos_token_id",
                                             "pad_token_id",
                                             "torch_dtype",
                                             "dtype",
                                             "attention_bias",
                                             "mlp_bias",
                                             "pretraining_tp",
                                             "sliding_window",
                                             "use_sliding_window",
                                             "max_window_layers",
                                             "layer_types"};
constexpr std::string_view kDroppedKeys[] = {"quantization_config"};

// The keys of `root` neither modeled nor dropped, as compact JSON text ("" when none).
std::string unmodeled_keys(const json& root) {
  const auto among = [](std::span<const std::string_view> keys, const std::string& key) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  json kept = json::object();
  for (auto it = root.begin(); it != root.end(); ++it)
    if (!among(kModeledKeys, it.key()) && !among(kDroppedKeys, it.key())) kept[it.key()] = *it;
  return kept.empty() ? std::string() : kept.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Typed access to config.json keys; every error names the source and the key.
class Reader {
 public:
  Reader(const json& object, std::string_view source, std::string prefix = {})
      : object_(object), source_(source), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool has(const char* key) const {
    const auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }

  std::int64_t integer(const char* key, std::int64_t fallback) const {
    if (!has(key)) return fallback;
    return to_integer(object_.at(key), key);
  }
  std::optional<std::int64_t> optional_integer(const char* key) const {
    if (!has(key)) return std::nullopt;
    return to_integer(object_.at(key), key);
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    return to_number(object_.at(key), key);
  }
  std::optional<double> optional_number(const char* key) const {
    if (!has(key)) return std::nullopt;
    return to_number(object_.at(key), key);
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = object_.at(key);
    if (!v.is_boolean()) bad(key, "a boolean", v);
    return v.get<bool>();
  }
  std::string string(const char* key, std::string fallback) const {
    if (!has(key)) return fallback;
    const json& v = object_.at(key);
    if (!v.is_string()) bad(key, "a string", v);
    return v.get<std::string>();
  }
  // An integer or a list of integers (eos_token_id).
  std::vector<std::int64_t> integer_list(const char* key,
                                         std::vector<std::int64_t> fallback) const {
    if (!has(key)) return fallback;
    const json& v = object_.at(key);
    if (!v.is_array()) return {to_integer(v, key)};
    std::vector<std::int64_t> out;
    for (const json& e : v)
      out.push_back(to_integer(e, key));
    return out;
  }
  std::vector<std::string> string_list(const char* key) const {
    if (!has(key)) return {};
    const json& v = object_.at(key);
    if (!v.is_array()) bad(key, "a list of strings", v);
    std::vector<std::string> out;
    for (const json& e : v) {
      if (!e.is_string()) bad(key, "a list of strings", v);
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  [[noreturn]] void bad(const char* key, const char* expected, const json& got) const {
    fail("{}: key '{}{}': expected {}, got {}", source_, prefix_, key, expected, got.dump());
  }
  [[noreturn]] void missing(const char* key, const char* why) const {
    fail("{}: key '{}{}' is required {}", source_, prefix_, key, why);
  }

 private:
  std::int64_t to_integer(const json& v, const char* key) const {
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() &&
          v.get<std::uint64_t>() >
              static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        bad(key, "an integer in range", v);
      return v.get<std::int64_t>();
    }
    // 4096.0 is what some tools write for an integer; accept it when exact.
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e15)
        return static_cast<std::int64_t>(d);
    }
    bad(key, "an integer", v);
  }
  double to_number(const json& v, const char* key) const {
    if (!v.is_number()) bad(key, "a number", v);
    const double d = v.get<double>();
    if (!std::isfinite(d)) bad(key, "a finite number", v);
    return d;
  }

  const json& object_;
  std::string_view source_;
  std::string prefix_;
};

// transformers' defaults per model type (configuration_{llama,mistral,qwen2}.py).
LlamaConfig defaults_for(ModelType type) {
  LlamaConfig c;
  c.model_type = type;
  switch (type) {
    case ModelType::llama:
      c.bos_token_id = 1;
      c.eos_token_ids = {2};
      break;
    case ModelType::mistral:
      c.intermediate_size = 14336;
      c.num_key_value_heads = 8;
      c.max_position_embeddings = 4096 * 32;
      c.sliding_window = 4096;
      c.bos_token_id = 1;
      c.eos_token_ids = {2};
      break;
    case ModelType::qwen2:
      c.vocab_size = 151936;
      c.intermediate_size = 22016;
      c.max_position_embeddings = 32768;
      c.attention_bias = true;
      break;
  }
  return c;
}

std::string_view architecture(ModelType type) {
  switch (type) {
    case ModelType::llama:
      return "LlamaForCausalLM";
    case ModelType::mistral:
      return "MistralForCausalLM";
    case ModelType::qwen2:
      return "Qwen2ForCausalLM";
  }
  return "LlamaForCausalLM";
}

// rope_scaling (or v5's rope_parameters, which also carries rope_theta and may be "default").
RopeScaling parse_rope_scaling(const json& object, std::string_view source, const char* key) {
  if (!object.is_object()) fail("{}: key '{}': expected an object or null", source, key);
  const Reader r(object, source, std::string(key) + ".");
  std::string name = r.string("rope_type", "");
  if (name.empty()) name = r.string("type", "");
  if (name.empty()) r.missing("rope_type", "(or the legacy 'type')");
  const auto type = parse_rope_scaling_type(name);
  if (!type)
    fail(
        "{}: key '{}.rope_type': unknown RoPE scaling type '{}' (expected default, linear, "
        "dynamic, llama3 or yarn)",
        source, key, name);
  RopeScaling s;
  s.type = *type;
  if (s.type == RopeScalingType::none) return s;
  if (!r.has("factor")) r.missing("factor", fmt::format("for rope_type {}", name).c_str());
  s.factor = r.number("factor", 1.0);
  switch (s.type) {
    case RopeScalingType::none:
    case RopeScalingType::linear:
      break;
    case RopeScalingType::dynamic:
      s.original_max_position_embeddings = r.optional_integer("original_max_position_embeddings");
      break;
    case RopeScalingType::llama3:
      for (const char* k :
           {"original_max_position_embeddings", "low_freq_factor", "high_freq_factor"})
        if (!r.has(k)) r.missing(k, "for rope_type llama3");
      s.original_max_position_embeddings = r.optional_integer("original_max_position_embeddings");
      s.low_freq_factor = r.number("low_freq_factor", s.low_freq_factor);
      s.high_freq_factor = r.number("high_freq_factor", s.high_freq_factor);
      break;
    case RopeScalingType::yarn:
      s.original_max_position_embeddings = r.optional_integer("original_max_position_embeddings");
      s.beta_fast = r.number("beta_fast", s.beta_fast);
      s.beta_slow = r.number("beta_slow", s.beta_slow);
      s.attention_factor = r.optional_number("attention_factor");
      s.mscale = r.optional_number("mscale");
      s.mscale_all_dim = r.optional_number("mscale_all_dim");
      if (r.has("truncate")) s.truncate = r.boolean("truncate", true);
      break;
  }
  return s;
}

json rope_scaling_to_json(const RopeScaling& s) {
  if (s.type == RopeScalingType::none) return nullptr;
  json j;
  const std::string name(to_string(s.type));
  // Both spellings: "rope_type" for current transformers, "type" for releases before 4.43.
  j["rope_type"] = name;
  j["type"] = name;
  j["factor"] = s.factor;
  if (s.original_max_position_embeddings)
    j["original_max_position_embeddings"] = *s.original_max_position_embeddings;
  if (s.type == RopeScalingType::llama3) {
    j["low_freq_factor"] = s.low_freq_factor;
    j["high_freq_factor"] = s.high_freq_factor;
  }
  if (s.type == RopeScalingType::yarn) {
    j["beta_fast"] = s.beta_fast;
    j["beta_slow"] = s.beta_slow;
    if (s.attention_factor) j["attention_factor"] = *s.attention_factor;
    if (s.mscale) j["mscale"] = *s.mscale;
    if (s.mscale_all_dim) j["mscale_all_dim"] = *s.mscale_all_dim;
    if (s.truncate) j["truncate"] = *s.truncate;
  }
  return j;
}

}  // namespace

void validate(const LlamaConfig& c, std::string_view source) {
  const auto positive = [&](std::int64_t v, const char* key) {
    if (v <= 0) fail("{}: {} must be positive, got {}", source, key, v);
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.intermediate_size, "intermediate_size");
  positive(c.num_hidden_layers, "num_hidden_layers");
  positive(c.num_attention_heads, "num_attention_heads");
  positive(c.num_key_value_heads, "num_key_value_heads");
  positive(c.max_position_embeddings, "max_position_embeddings");
  if (c.head_dim < 0) fail("{}: head_dim must be positive, got {}", source, c.head_dim);
  if (c.head_dim == 0 && c.hidden_size % c.num_attention_heads != 0)
    fail("{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim is given)",
         source, c.hidden_size, c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
         c.num_attention_heads, c.num_key_value_heads);
  const std::int64_t d = c.resolved_head_dim();
  if (d % 2 != 0) fail("{}: head_dim {} must be even (RoPE rotates half-pairs)", source, d);
  // Keep every size product (params, activations) far from int64 overflow.
  constexpr std::int64_t kLimit = std::int64_t{1} << 24;
  const std::pair<std::int64_t, const char*> sizes[] = {
      {c.vocab_size, "vocab_size"},
      {c.hidden_size, "hidden_size"},
      {c.intermediate_size, "intermediate_size"},
      {c.num_hidden_layers, "num_hidden_layers"},
      {c.num_attention_heads, "num_attention_heads"},
      {d, "head_dim"}};
  for (const auto& [v, key] : sizes)
    if (v > kLimit) fail("{}: {} {} is beyond the supported range", source, key, v);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
    fail("{}: rms_norm_eps must be positive, got {}", source, c.rms_norm_eps);
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta))
    fail("{}: rope_theta must be positive, got {}", source, c.rope_theta);
  // transformers maps "swish" to the same SiLU.
  if (c.hidden_act != "silu" && c.hidden_act != "swish")
    fail("{}: hidden_act '{}' is not supported (only silu, also spelt swish)", source,
         c.hidden_act);
  if (c.torch_dtype != "float32" && c.torch_dtype != "bfloat16" && c.torch_dtype != "float16" &&
      c.torch_dtype != "float64")
    fail(
        "{}: dtype '{}' (key torch_dtype, or dtype in transformers v5) is not supported "
        "(float32, bfloat16, float16 or float64)",
        source, c.torch_dtype);
  if (!(c.attention_dropout >= 0.0 && c.attention_dropout < 1.0))
    fail("{}: attention_dropout must be in [0, 1), got {}", source, c.attention_dropout);
  if (c.sliding_window && *c.sliding_window <= 0)
    fail("{}: sliding_window must be positive, got {}", source, *c.sliding_window);
  if (c.max_window_layers < 0)
    fail("{}: max_window_layers must not be negative, got {}", source, c.max_window_layers);
  if (!c.layer_types.empty()) {
    if (std::ssize(c.layer_types) != c.num_hidden_layers)
      fail("{}: layer_types lists {} layers, num_hidden_layers is {}", source, c.layer_types.size(),
           c.num_hidden_layers);
    for (const std::string& t : c.layer_types)
      if (t != kFullAttention && t != kSlidingAttention)
        fail("{}: layer_types: '{}' is not {} or {}", source, t, kFullAttention, kSlidingAttention);
  }
  if (c.model_type != ModelType::llama && c.mlp_bias)
    fail("{}: mlp_bias is a llama option; {} has none", source, to_string(c.model_type));
  if (c.model_type == ModelType::mistral && c.attention_bias)
    fail("{}: attention_bias is not a mistral option", source);
  const RopeScaling& s = c.rope_scaling;
  if (s.enabled()) {
    if (!(s.factor >= 1.0) || !std::isfinite(s.factor))
      fail("{}: rope_scaling.factor must be >= 1, got {}", source, s.factor);
    if (s.original_max_position_embeddings && *s.original_max_position_embeddings <= 0)
      fail("{}: rope_scaling.original_max_position_embeddings must be positive", source);
    if (s.type == RopeScalingType::llama3) {
      if (!s.original_max_position_embeddings)
        fail("{}: rope_scaling of type llama3 needs original_max_position_embeddings", source);
      if (!(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor))
        fail("{}: rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor (got {}, {})",
             source, s.low_freq_factor, s.high_freq_factor);
    }
    if (s.type == RopeScalingType::yarn && !(s.beta_fast > s.beta_slow))
      fail("{}: rope_scaling yarn needs beta_fast > beta_slow (got {}, {})", source, s.beta_fast,
           s.beta_slow);
  }
  // Positions are int32 throughout (layouts, position ids), and the RoPE tables are float32.
  if (c.max_position_embeddings > std::numeric_limits<std::int32_t>::max())
    fail("{}: max_position_embeddings {} is beyond the supported range (positions are int32)",
         source, c.max_position_embeddings);
  if (c.rope_theta > std::numeric_limits<float>::max())
    fail("{}: rope_theta {} is beyond float32's range", source, c.rope_theta);
  // The tables as the model builds them, so that what only they check (yarn's attention factor
  // from attention_factor or mscale) fails here, naming the file, not at the first forward.
  try {
    (void)rope::compute_frequencies({d, c.rope_theta, c.rope_scaling, c.max_position_embeddings});
  } catch (const Error& e) {
    fail("{}: {}", source, e.what());
  }
}

LlamaConfig parse_config(std::string_view json_text, std::string_view source) {
  const json root = core::parse_json(json_text, source);
  if (!root.is_object()) fail("{}: expected a JSON object", source);
  const Reader r(root, source);
  if (!r.has("model_type")) r.missing("model_type", "(llama, mistral or qwen2)");
  const std::string type_name = r.string("model_type", "");
  const auto type = parse_model_type(type_name);
  if (!type)
    fail("{}: key 'model_type': unsupported model type '{}' (expected llama, mistral or qwen2)",
         source, type_name);

  LlamaConfig c = defaults_for(*type);
  c.vocab_size = r.integer("vocab_size", c.vocab_size);
  c.hidden_size = r.integer("hidden_size", c.hidden_size);
  c.intermediate_size = r.integer("intermediate_size", c.intermediate_size);
  c.num_hidden_layers = r.integer("num_hidden_layers", c.num_hidden_layers);
  c.num_attention_heads = r.integer("num_attention_heads", c.num_attention_heads);
  // Absent: Llama's default is multi-head attention (kv heads = heads), Mistral's and Qwen2's
  // their configs' defaults; null: multi-head attention for every type (Qwen2Config's rule).
  const bool kv_null =
      root.contains("num_key_value_heads") && root["num_key_value_heads"].is_null();
  const std::int64_t kv_default =
      *type == ModelType::llama || kv_null ? c.num_attention_heads : c.num_key_value_heads;
  c.num_key_value_heads = r.integer("num_key_value_heads", kv_default);
  c.head_dim = r.integer("head_dim", 0);
  c.max_position_embeddings = r.integer("max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = r.number("rms_norm_eps", c.rms_norm_eps);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", c.tie_word_embeddings);
  c.hidden_act = r.string("hidden_act", c.hidden_act);
  c.initializer_range = r.number("initializer_range", c.initializer_range);
  c.attention_dropout = r.number("attention_dropout", c.attention_dropout);
  c.bos_token_id =
      root.contains("bos_token_id") ? r.optional_integer("bos_token_id") : c.bos_token_id;
  c.eos_token_ids =
      root.contains("eos_token_id") ? r.integer_list("eos_token_id", {}) : c.eos_token_ids;
  c.pad_token_id = r.optional_integer("pad_token_id");
  // transformers v5 writes "dtype"; earlier releases "torch_dtype".
  c.torch_dtype = r.string("torch_dtype", r.string("dtype", c.torch_dtype));

  switch (*type) {
    case ModelType::llama:
      c.attention_bias = r.boolean("attention_bias", false);
      c.mlp_bias = r.boolean("mlp_bias", false);
      break;
    case ModelType::mistral:  // MistralAttention has no biases, whatever the JSON says
      if (root.contains("sliding_window")) c.sliding_window = r.optional_integer("sliding_window");
      break;
    case ModelType::qwen2:  // q/k/v biases always; the window only when enabled
      c.sliding_window = std::nullopt;
      if (r.boolean("use_sliding_window", false))
        c.sliding_window = r.integer("sliding_window", 4096);
      c.max_window_layers = r.integer("max_window_layers", c.max_window_layers);
      c.layer_types = r.string_list("layer_types");
      break;
  }

  c.rope_theta = r.number("rope_theta", c.rope_theta);
  if (r.has("rope_scaling"))
    c.rope_scaling = parse_rope_scaling(root["rope_scaling"], source, "rope_scaling");
  // transformers v5: rope_parameters {"rope_type", "rope_theta", ...} replaces both.
  if (r.has("rope_parameters") && !r.has("rope_scaling")) {
    const json& p = root["rope_parameters"];
    c.rope_scaling = parse_rope_scaling(p, source, "rope_parameters");
    c.rope_theta = Reader(p, source, "rope_parameters.").number("rope_theta", c.rope_theta);
  }

  if (c.head_dim == 0 && c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0)
    c.head_dim = c.hidden_size / c.num_attention_heads;
  c.other_keys = unmodeled_keys(root);
  validate(c, source);
  return c;
}

std::optional<std::int64_t> LlamaConfig::attention_window() const {
  if (!sliding_window || model_type != ModelType::qwen2) return sliding_window;
  const bool any_slides = layer_types.empty() ? max_window_layers < num_hidden_layers
                                              : std::find(layer_types.begin(), layer_types.end(),
                                                          kSlidingAttention) != layer_types.end();
  return any_slides ? sliding_window : std::nullopt;
}

LlamaConfig load_config(const std::filesystem::path& path) {
  std::filesystem::path file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) file /= "config.json";
  return parse_config(core::read_regular_file(file, "the model config"), file.string());
}

std::string config_to_json(const LlamaConfig& c) {
  // nlohmann's default object is a std::map: keys come out sorted, like transformers'. The keys
  // anchorctx does not model first, as read; the modeled ones over them.
  json j = c.other_keys.empty() ? json::object() : json::parse(c.other_keys);
  j["architectures"] = json::array({architecture(c.model_type)});
  j["model_type"] = to_string(c.model_type);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.resolved_head_dim();
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = rope_scaling_to_json(c.rope_scaling);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = c.hidden_act;
  j["initializer_range"] = c.initializer_range;
  j["attention_dropout"] = c.attention_dropout;
  j["use_cache"] = true;
  j["bos_token_id"] = c.bos_token_id ? json(*c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids.front();
  else
    j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  j["torch_dtype"] = c.torch_dtype;
  switch (c.model_type) {
    case ModelType::llama:
      j["attention_bias"] = c.attention_bias;
      j["mlp_bias"] = c.mlp_bias;
      j["pretraining_tp"] = 1;
      break;
    case ModelType::mistral:
      j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
      break;
    case ModelType::qwen2:
      j["use_sliding_window"] = c.sliding_window.has_value();
      j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
      j["max_window_layers"] = c.max_window_layers;
      if (!c.layer_types.empty()) j["layer_types"] = c.layer_types;
      break;
  }
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

void save_config(const LlamaConfig& config, const std::filesystem::path& path) {
  validate(config, path.string());
  core::write_file_atomic(path, config_to_json(config));
}

LlamaConfig preset(std::string_view name) {
  LlamaConfig c;
  c.model_type = ModelType::llama;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = false;
  c.torch_dtype = "float32";
  if (name == "tiny") {
    c.vocab_size = 259;  // the byte tokenizer: 256 bytes, bos, eos, pad
    c.hidden_size = 128;
    c.intermediate_size = 352;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 256;
    c.eos_token_ids = {257};
    c.pad_token_id = 258;
  } else if (name == "reference") {
    c.vocab_size = 32000;
    c.hidden_size = 512;
    c.intermediate_size = 1408;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (name == "small") {
    // The study's model (docs/STUDY.md): 10.5M parameters, head_dim 64 as in LLaMA, sized so
    // that the default study fits 90 minutes on two cores.
    c.vocab_size = 259;
    c.hidden_size = 384;
    c.intermediate_size = 1152;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 6;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 256;
    c.eos_token_ids = {257};
    c.pad_token_id = 258;
  } else if (name == "llama2-7b") {
    // meta-llama/Llama-2-7b-hf's config.json: the paper's main model (for `anchorctx plan`).
    c.vocab_size = 32000;
    c.hidden_size = 4096;
    c.intermediate_size = 11008;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 32;
    c.max_position_embeddings = 4096;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (name == "llama3-8b") {
    // meta-llama/Meta-Llama-3-8B's config.json: GQA with 8 kv heads (Ulysses' replication rule).
    c.vocab_size = 128256;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.max_position_embeddings = 8192;
    c.rope_theta = 500000.0;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001};
  } else {
    fail("unknown model preset '{}' (known: {})", name, fmt::join(preset_names(), ", "));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  validate(c, fmt::format("preset {}", name));
  return c;
}

std::vector<std::string> preset_names() {
  return {"tiny", "reference", "small", "llama2-7b", "llama3-8b"};
}

std::int64_t parameter_count(const LlamaConfig& c) {
  const std::int64_t h = c.hidden_size;
  const std::int64_t q = c.q_dim();
  const std::int64_t kv = c.kv_dim();
  const std::int64_t inter = c.intermediate_size;
  std::int64_t layer = h * q + 2 * h * kv + q * h;  // q, k, v, o
  if (c.qkv_bias()) layer += q + 2 * kv;
  if (c.o_bias()) layer += h;
  layer += 3 * h * inter;  // gate, up, down
  if (c.mlp_bias) layer += 2 * inter + h;
  layer += 2 * h;  // input and post-attention RMSNorm
  std::int64_t total = c.vocab_size * h + c.num_hidden_layers * layer + h;  // + final norm
  if (!c.tie_word_embeddings) total += c.vocab_size * h;
  return total;
}

double matrix_parameter_count(const LlamaConfig& c) {
  const double h = static_cast<double>(c.hidden_size);
  const double per_layer = h * static_cast<double>(c.q_dim()) * 2 +
                           h * static_cast<double>(c.kv_dim()) * 2 +
                           3 * h * static_cast<double>(c.intermediate_size);
  return per_layer * static_cast<double>(c.num_hidden_layers) +
         h * static_cast<double>(c.vocab_size);
}

}  // namespace anchorctx::model
