// rope-drift (include/anchorctx/analysis/rope_drift.h) on a tiny random model.
#include "anchorctx/analysis/rope_drift.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/safetensors.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;

model::LlamaConfig tiny_config() {
  model::LlamaConfig c = model::preset("tiny");
  c.vocab_size = 259;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 512;
  return c;
}

struct Tiny {
  model::LlamaConfig config = tiny_config();
  std::vector<float> params;
  std::vector<std::vector<std::int32_t>> sequences;

  explicit Tiny(std::int64_t T, int count = 2) {
    const auto layout = model::ParameterLayout::for_config(config);
    params.resize(layout.total());
    // A larger init than transformers' 0.02 so that attention is not uniform.
    config.initializer_range = 0.3;
    model::init_parameters(layout, config, 7, params);
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> id(0, 255);
    for (int s = 0; s < count; ++s) {
      std::vector<std::int32_t> seq{256};
      while (static_cast<std::int64_t>(seq.size()) < T)
        seq.push_back(id(rng));
      sequences.push_back(seq);
    }
  }
};

analysis::RopeDriftOptions options(std::int64_t T, std::vector<std::int64_t> deltas) {
  analysis::RopeDriftOptions o;
  o.seq_len = T;
  o.deltas = std::move(deltas);
  o.logit_delta1 = o.deltas.front();
  return o;
}

const analysis::DriftResult& find(const analysis::RopeDriftReport& r, const std::string& mode,
                                  analysis::PositionPolicy policy, std::int64_t d1) {
  for (const auto& x : r.results)
    if (x.mode == mode && x.policy == policy && x.delta1 == d1) return x;
  throw std::runtime_error("result not found");
}

TEST(RopeDrift, ZeroWhenTheShiftsAreEqual) {
  Tiny m(96);
  const auto report =
      analysis::measure_rope_drift(m.config, m.params, m.sequences, options(96, {16, 0}));
  for (const auto& r : report.results) {
    if (r.delta1 != 16) continue;
    EXPECT_EQ(r.D, 0.0) << r.mode << " " << analysis::to_string(r.policy);
    EXPECT_EQ(r.D_excl_first, 0.0);
  }
  for (const auto& g : report.logit_growth)
    EXPECT_EQ(g.D_logit, 0.0) << g.mode;
  ASSERT_EQ(report.results.size(), 3u * 2u * 2u);
}

TEST(RopeDrift, Fp32IsAtRoundingLevelFarBelowBf16) {
  // Positions below 2^24 are exact in float32; small shifts keep the angles' rounding tiny.
  Tiny m(128);
  auto o = options(128, {0, 8, 17});
  o.policies = {analysis::PositionPolicy::global};
  const auto report = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  for (const std::int64_t d1 : {0, 8, 17}) {
    const double fp32 = find(report, "fp32", analysis::PositionPolicy::global, d1).D;
    const double bf16 = find(report, "hf_bf16", analysis::PositionPolicy::global, d1).D;
    const double exact = find(report, "exact", analysis::PositionPolicy::global, d1).D;
    std::printf("delta1 %lld: fp32 %.3g exact %.3g hf_bf16 %.3g\n", static_cast<long long>(d1),
                fp32, exact, bf16);
    EXPECT_LT(fp32, 1e-3);
    EXPECT_GT(bf16, 0.0);
    EXPECT_LT(fp32 * 100, bf16);
    EXPECT_LT(exact, bf16);
  }
  // The per-token contributions add up to D.
  const auto& r = find(report, "hf_bf16", analysis::PositionPolicy::global, 0);
  double sum = 0.0;
  for (const double c : r.per_token)
    sum += c;
  EXPECT_NEAR(sum, r.D, 1e-9 * r.D);
  EXPECT_NEAR(r.D_excl_first, r.D - r.per_token[0], 1e-12);
}

TEST(RopeDrift, DetectsAPlantedPositionDependentError) {
  Tiny m(128, 1);
  auto o = options(128, {0, 16});
  o.modes = {"fp32"};
  o.policies = {analysis::PositionPolicy::global};
  const auto clean = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  // A perturbation of the keys that depends on the absolute position, not on i - j.
  o.perturb = [](int, std::span<const std::int32_t> pos, std::span<float> q, std::span<float> k) {
    (void)q;
    const std::size_t kvd = k.size() / pos.size();
    for (std::size_t i = 0; i < pos.size(); ++i)
      for (std::size_t d = 0; d < kvd; ++d)
        k[i * kvd + d] += 0.05f * std::sin(0.7f * static_cast<float>(pos[i]) + d);
  };
  const auto planted = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  const double c0 = find(clean, "fp32", analysis::PositionPolicy::global, 0).D;
  const double p0 = find(planted, "fp32", analysis::PositionPolicy::global, 0).D;
  std::printf("clean %.3g planted %.3g\n", c0, p0);
  EXPECT_GT(p0, 1000 * c0);
  EXPECT_GT(p0, 1e-3);
  EXPECT_EQ(find(planted, "fp32", analysis::PositionPolicy::global, 16).D, 0.0);
  EXPECT_GT(planted.logit_growth.back().D_logit, 0.0);
}

TEST(RopeDrift, SameBitsForAnyThreadCount) {
  Tiny m(100, 1);
  auto o = options(100, {0, 50});
  o.modes = {"hf_bf16"};
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  omp_set_num_threads(3);
  const auto three = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  omp_set_num_threads(saved);
  ASSERT_EQ(one.results.size(), three.results.size());
  for (std::size_t i = 0; i < one.results.size(); ++i) {
    EXPECT_EQ(one.results[i].D, three.results[i].D);
    EXPECT_EQ(one.results[i].per_token, three.results[i].per_token);
  }
  for (std::size_t i = 0; i < one.logit_growth.size(); ++i)
    EXPECT_EQ(one.logit_growth[i].D_logit, three.logit_growth[i].D_logit);
}

TEST(RopeDrift, JsonAndReportFolder) {
  Tiny m(200, 1);
  auto o = options(200, {0, 4});
  const auto report = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  const nlohmann::json j = analysis::to_json(report);
  for (const char* key : {"results", "logit_growth", "first_token_share", "seq_len", "sequences"})
    EXPECT_TRUE(j.contains(key)) << key;
  ASSERT_EQ(j["results"].size(), 12u);
  for (const char* key : {"mode", "policy", "delta1", "delta2", "D", "D_excl_first"})
    EXPECT_TRUE(j["results"][0].contains(key)) << key;
  for (const char* key : {"mode", "policy", "T", "D_logit"})
    EXPECT_TRUE(j["logit_growth"][0].contains(key)) << key;
  // Lengths 64, 128, then T.
  std::vector<std::int64_t> lengths;
  for (const auto& g : report.logit_growth)
    if (g.mode == "fp32" && g.policy == analysis::PositionPolicy::global)
      lengths.push_back(g.length);
  EXPECT_EQ(lengths, (std::vector<std::int64_t>{64, 128, 200}));
  EXPECT_EQ(j["first_token_share"].size(), 6u);
  EXPECT_TRUE(j["first_token_share"][0].contains("share"));

  const fs::path dir = fs::path(testing::TempDir()) / "rope_drift_report";
  fs::remove_all(dir);
  analysis::write_report(report, "tiny", dir.string());
  for (const char* f :
       {"report.json", "report.md", "d_vs_delta.svg", "per_token.svg", "d_logit.svg"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  std::ifstream md(dir / "report.md");
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("## Findings"), std::string::npos);
  fs::remove_all(dir);
}

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(RopeDrift, BadInputGetsClearErrors) {
  Tiny m(64, 1);
  expect_error(
      [&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, options(80, {0})); },
      "fewer than the requested length 80");
  m.config.max_position_embeddings = 32;
  expect_error(
      [&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, options(64, {0})); },
      "--allow-long");
  auto o = options(64, {0});
  o.allow_long = true;
  EXPECT_NO_THROW(analysis::measure_rope_drift(m.config, m.params, m.sequences, o));
  o.modes = {"bf16"};
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "unknown mode 'bf16'");
  o = options(64, {0});
  o.allow_long = true;
  o.logit_delta1 = 5;
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "not in the delta1 list");
  o = options(64, {-1});
  o.allow_long = true;
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "delta1 must be >= 0");
  m.sequences[0][3] = 999;
  o = options(64, {0});
  o.allow_long = true;
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "outside the vocabulary");
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, {}, o); }, "no sequences");
  expect_error([] { analysis::parse_position_policy("reset"); }, "unknown position policy");

  // Sequences from documents: bos, ids, eos after each document (not right after bos); too
  // little text is an error.
  const auto seqs = analysis::make_sequences({{5, 6, 7}, {8, 9}}, 2, 4, 1, 2);
  EXPECT_EQ(seqs, (std::vector<std::vector<std::int32_t>>{{1, 5, 6, 7}, {1, 8, 9, 2}}));
  expect_error(
      [] {
        analysis::make_sequences({{5, 6, 7}}, 2, 4, 1, 2);
      },
      "holds 1 sequences of 4 tokens, 2 were asked for");

  // A model folder missing a tensor: the loader names it.
  const fs::path dir = fs::path(testing::TempDir()) / "rope_drift_missing";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto layout = model::ParameterLayout::for_config(m.config);
  std::vector<model::TensorData> tensors;
  for (const auto& p : layout.params()) {
    if (p.name == "model.norm.weight") continue;
    tensors.push_back(model::tensor_from_f32(
        p.name, p.shape, std::span<const float>(m.params.data() + p.offset, p.size)));
  }
  model::write_safetensors(dir / "model.safetensors", tensors);
  std::vector<float> params(layout.total());
  expect_error([&] { model::load_parameters(model::SafetensorsReader::open(dir), layout, params); },
               "model.norm.weight");
  fs::remove_all(dir);
}

}  // namespace
