// The committed fixture of tools/fixtures/make_rope_fixtures.py (transformers' RoPE, run by
// torch on the CPU) and small helpers to read it: bit patterns, hex strings, ulp distances.
#pragma once

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::rope_test {

using nlohmann::json;

inline const json& fixture() {
  static const json doc = [] {
    const auto path =
        std::filesystem::path(ANCHORCTX_TESTS_DIR) / "rope" / "fixtures" / "rope_frequencies.json";
    std::ifstream in(path);
    if (!in) fail("cannot open {}", path.string());
    std::stringstream text;
    text << in.rdbuf();
    return json::parse(text.str());
  }();
  return doc;
}

inline const json& frequency_case(const std::string& name) {
  for (const json& c : fixture().at("frequencies"))
    if (c.at("name") == name) return c;
  fail("fixture has no frequency case {}", name);
}

// The RopeSpec of a fixture case: its config fields and rope_scaling dict, read the way
// model::LlamaConfig reads config.json (absent optional fields stay unset).
inline rope::RopeSpec spec_of(const json& c) {
  rope::RopeSpec spec;
  spec.head_dim = c.at("head_dim");
  spec.theta = c.at("rope_theta");
  spec.max_position_embeddings = c.at("max_position_embeddings");
  const json& s = c.at("rope_scaling");
  if (s.is_null()) return spec;
  const auto type = rope::parse_rope_scaling_type(s.at("rope_type").get<std::string>());
  if (!type) fail("fixture: unknown rope_type {}", s.at("rope_type").dump());
  spec.scaling.type = *type;
  spec.scaling.factor = s.value("factor", 1.0);
  if (s.contains("original_max_position_embeddings"))
    spec.scaling.original_max_position_embeddings = s.at("original_max_position_embeddings");
  spec.scaling.low_freq_factor = s.value("low_freq_factor", 1.0);
  spec.scaling.high_freq_factor = s.value("high_freq_factor", 4.0);
  spec.scaling.beta_fast = s.value("beta_fast", 32.0);
  spec.scaling.beta_slow = s.value("beta_slow", 1.0);
  if (s.contains("attention_factor")) spec.scaling.attention_factor = s.at("attention_factor");
  if (s.contains("mscale")) spec.scaling.mscale = s.at("mscale");
  if (s.contains("mscale_all_dim")) spec.scaling.mscale_all_dim = s.at("mscale_all_dim");
  if (s.contains("truncate")) spec.scaling.truncate = s.at("truncate");
  return spec;
}

inline std::vector<float> floats_from_bits(const json& bits) {
  std::vector<float> out;
  for (const json& b : bits)
    out.push_back(std::bit_cast<float>(b.get<std::uint32_t>()));
  return out;
}

// A hex string of `digits`-digit bit patterns (4: bf16, 8: float32) as float values.
inline std::vector<float> floats_from_hex(const json& hex, int digits) {
  const std::string text = hex.get<std::string>();
  std::vector<float> out;
  for (std::size_t i = 0; i + digits <= text.size(); i += digits) {
    const auto bits =
        static_cast<std::uint32_t>(std::strtoul(text.substr(i, digits).c_str(), nullptr, 16));
    out.push_back(std::bit_cast<float>(digits == 4 ? bits << 16 : bits));
  }
  return out;
}

// Distance in units in the last place between two finite floats of the same sign (0 = equal).
inline std::int64_t ulp_distance(float a, float b) {
  const auto ordered = [](float v) {
    const auto u = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(v));
    return (u & 0x80000000) != 0 ? -(u & 0x7FFFFFFF) : u;
  };
  const std::int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

// The same in bf16 units (both values must be bf16 values).
inline std::int64_t bf16_ulp_distance(float a, float b) {
  return ulp_distance(a, b) >> 16;
}

}  // namespace anchorctx::rope_test
