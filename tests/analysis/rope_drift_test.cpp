// rope-drift (include/anchorctx/analysis/rope_drift.h) on a tiny random model.
#include "anchorctx/analysis/rope_drift.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/error.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/model/safetensors.h"
#include "support/tiny_config.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;

model::LlamaConfig tiny_config() {
  model::LlamaConfig c = test::tiny_config();
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

// The forward rope-drift runs: every layer's q and k once, in order, of the documented sizes;
// then the model is a plain model again (the hook and the early stop do not outlive the call:
// the same loss bits before and after, and no hook call from a plain forward).
TEST(RopeDrift, AttentionInputsSeesEveryLayerOnceAndLeavesTheModelAsItWas) {
  const std::int64_t T = 70;
  Tiny m(T, 1);
  model::RunOptions run;
  run.precision = model::Precision::bf16;
  run.rope_mode = rope::RopeMode::hf_bf16;
  model::LlamaTrainModel net(m.config, run);
  std::copy(m.params.begin(), m.params.end(), net.params().begin());
  const attention::BlockPlan plan = eval::causal_plan(T);
  const std::vector<std::int32_t>& ids = m.sequences[0];
  std::vector<std::int32_t> targets(ids.begin() + 1, ids.end()), positions(T);
  targets.push_back(-1);
  for (std::int64_t i = 0; i < T; ++i)
    positions[i] = static_cast<std::int32_t>(i);
  const model::TrainBatch batch{ids, targets, positions, &plan};

  const model::LossSum before = net.forward(batch);
  const std::int64_t D = m.config.hidden_size / m.config.num_attention_heads;
  std::vector<int> layers;
  net.attention_inputs(batch, [&](int layer, std::span<const float> q, std::span<const float> k) {
    layers.push_back(layer);
    EXPECT_EQ(q.size(), static_cast<std::size_t>(T * m.config.num_attention_heads * D));
    EXPECT_EQ(k.size(), static_cast<std::size_t>(T * m.config.num_key_value_heads * D));
  });
  std::vector<int> expected(static_cast<std::size_t>(m.config.num_hidden_layers));
  for (std::size_t l = 0; l < expected.size(); ++l)
    expected[l] = static_cast<int>(l);
  EXPECT_EQ(layers, expected);
  const model::LossSum after = net.forward(batch);
  EXPECT_EQ(after.tokens, T - 1);
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(after.loss, before.loss);
  EXPECT_TRUE(std::isfinite(after.loss) && after.loss > 0.0);
}

TEST(RopeDrift, ZeroWhenTheShiftsAreEqual) {
  Tiny m(96);
  const auto report =
      analysis::measure_rope_drift(m.config, m.params, m.sequences, options(96, {16, 0}));
  for (const auto& r : report.results) {
    if (r.delta1 != 16) continue;
    EXPECT_EQ(r.D, 0.0) << r.mode << " " << rope::to_string(r.policy);
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

// D, the per-key contributions, the first key's attention and D_logit recomputed naively in
// float64 from the very q and k the tool compared (seen through the perturb hook, after a
// planted position-dependent error so that D is far above float32 rounding).
TEST(RopeDrift, MatchesAFloat64ReferenceOnTheCapturedQueriesAndKeys) {
  const std::int64_t T = 131;  // not a multiple of the 64-key block nor of the 4-row tile
  Tiny m(T, 1);
  auto o = options(T, {3});
  o.delta2 = 70;
  o.modes = {"fp32"};
  o.policies = {analysis::PositionPolicy::global};
  std::map<std::int32_t, std::vector<std::pair<std::vector<float>, std::vector<float>>>> seen;
  o.perturb = [&](int layer, std::span<const std::int32_t> pos, std::span<float> q,
                  std::span<float> k) {
    const std::size_t kvd = k.size() / pos.size();
    for (std::size_t i = 0; i < pos.size(); ++i)
      for (std::size_t d = 0; d < kvd; ++d)
        k[i * kvd + d] += 0.05f * std::sin(0.3f * static_cast<float>(pos[i]) + d);
    auto& layers = seen[pos[0]];  // pos[0] is the run's shift
    layers.resize(static_cast<std::size_t>(layer) + 1);
    layers[layer] = {std::vector<float>(q.begin(), q.end()),
                     std::vector<float>(k.begin(), k.end())};
  };
  const auto report = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);

  const std::int64_t L = m.config.num_hidden_layers, Hq = m.config.num_attention_heads,
                     Hkv = m.config.num_key_value_heads, D = m.config.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto attention = [&](const std::vector<float>& q, const std::vector<float>& k, std::int64_t h,
                       std::int64_t i) {
    const std::int64_t g = h / (Hq / Hkv);
    std::vector<double> s(static_cast<std::size_t>(i + 1));
    double mx = -1e300, z = 0.0;
    for (std::int64_t j = 0; j <= i; ++j) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < D; ++d)
        dot += static_cast<double>(q[(i * Hq + h) * D + d]) * k[(j * Hkv + g) * D + d];
      s[j] = dot * scale;
      mx = std::max(mx, s[j]);
    }
    for (auto& v : s)
      z += (v = std::exp(v - mx));
    for (auto& v : s)
      v /= z;
    return s;
  };
  std::vector<double> c(static_cast<std::size_t>(T), 0.0);
  double ref_d = 0.0, sink = 0.0, logit = 0.0;
  for (std::int64_t l = 0; l < L; ++l) {
    const auto& [q1, k1] = seen.at(3)[l];
    const auto& [q2, k2] = seen.at(70)[l];
    for (std::int64_t h = 0; h < Hq; ++h) {
      const std::int64_t g = h / (Hq / Hkv);
      for (std::int64_t i = 0; i < T; ++i) {
        const auto a1 = attention(q1, k1, h, i), a2 = attention(q2, k2, h, i);
        for (std::int64_t j = 0; j <= i; ++j) {
          const double v = std::abs(a1[j] - a2[j]) / static_cast<double>(i + 1);
          c[j] += v;
          ref_d += v;
        }
        sink += a2[0];
        double s1 = 0.0, s2 = 0.0;
        for (std::int64_t d = 0; d < D; ++d) {
          s1 += static_cast<double>(q1[(i * Hq + h) * D + d]) * k1[g * D + d];
          s2 += static_cast<double>(q2[(i * Hq + h) * D + d]) * k2[g * D + d];
        }
        logit += std::abs(s1 - s2) * scale;
      }
    }
  }
  const auto& r = find(report, "fp32", analysis::PositionPolicy::global, 3);
  std::printf("D %.6g reference %.6g\n", r.D, ref_d);
  ASSERT_GT(ref_d, 1e-2);
  EXPECT_NEAR(r.D, ref_d, 1e-4 * ref_d);
  for (std::int64_t j = 0; j < T; ++j)
    EXPECT_NEAR(r.per_token[j], c[j], 1e-5 * ref_d) << "key " << j;
  EXPECT_NEAR(report.first_token_share[0].first_key_attention,
              sink / static_cast<double>(L * Hq * T), 1e-6);
  EXPECT_NEAR(report.logit_growth.back().D_logit, logit / static_cast<double>(T),
              1e-5 * logit / static_cast<double>(T));
}

TEST(RopeDrift, FirstKeyAttentionIsHarmonicOverTForUniformRows) {
  Tiny m(100, 1);
  auto o = options(100, {0});
  o.modes = {"fp32"};
  o.policies = {analysis::PositionPolicy::global};
  const auto normal = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  // Zero queries make every row uniform: row i gives the first key 1/(i+1).
  o.perturb = [](int, std::span<const std::int32_t>, std::span<float> q, std::span<float>) {
    std::fill(q.begin(), q.end(), 0.0f);
  };
  const auto uniform = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  double harmonic = 0.0;
  for (int i = 1; i <= 100; ++i)
    harmonic += 1.0 / i;
  ASSERT_EQ(uniform.first_token_share.size(), 1u);
  EXPECT_NEAR(uniform.first_token_share[0].first_key_attention, harmonic / 100, 1e-6);
  EXPECT_EQ(find(uniform, "fp32", analysis::PositionPolicy::global, 0).D, 0.0);
  // With the model's own queries the first key draws a different share, still a probability.
  const double own = normal.first_token_share[0].first_key_attention;
  EXPECT_GT(std::abs(own - harmonic / 100), 1e-4);
  EXPECT_GT(own, 0.0);
  EXPECT_LT(own, 1.0);
}

TEST(RopeDrift, SameBitsForAnyThreadCountAndGrouping) {
  // 99 rows: not whole 4-row tiles, so a chunk's last row is repeated to fill one.
  Tiny m(99, 1);
  auto o = options(99, {0, 50, 7});
  o.modes = {"hf_bf16"};
  std::vector<std::pair<std::int64_t, std::int64_t>> calls;
  o.progress = [&](std::int64_t done, std::int64_t total, const std::string&) {
    calls.emplace_back(done, total);
  };
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  // 1 mode x 2 policies x 1 sequence x 3 deltas, reported before each run.
  ASSERT_EQ(calls.size(), 6u);
  EXPECT_EQ(calls.front(), (std::pair<std::int64_t, std::int64_t>{0, 6}));
  EXPECT_EQ(calls.back().second, 6);
  omp_set_num_threads(3);
  const auto three = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  o.group_bytes = 1;  // one delta1 run per group
  const auto single = analysis::measure_rope_drift(m.config, m.params, m.sequences, o);
  omp_set_num_threads(saved);
  for (const auto* other : {&three, &single}) {
    ASSERT_EQ(one.results.size(), other->results.size());
    for (std::size_t i = 0; i < one.results.size(); ++i) {
      EXPECT_EQ(one.results[i].D, other->results[i].D);
      EXPECT_EQ(one.results[i].per_token, other->results[i].per_token);
    }
    for (std::size_t i = 0; i < one.logit_growth.size(); ++i)
      EXPECT_EQ(one.logit_growth[i].D_logit, other->logit_growth[i].D_logit);
    for (std::size_t i = 0; i < one.first_token_share.size(); ++i)
      EXPECT_EQ(one.first_token_share[i].first_key_attention,
                other->first_token_share[i].first_key_attention);
  }
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

  const fs::path dir = fs::path(::testing::TempDir()) / "rope_drift_report";
  fs::remove_all(dir);
  analysis::write_report(report, "tiny", dir.string());
  for (const char* f : {"report.json", "report.md", "d_vs_delta.svg", "per_token.svg",
                        "d_logit.svg", "d_vs_delta.png", "per_token.png", "d_logit.png"})
    EXPECT_TRUE(fs::exists(dir / f) && fs::file_size(dir / f) > 1000) << f;
  // Each write is atomic: no temporary file is left behind.
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
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
  // Positions past int32, also for deltas near INT64_MAX, where T + delta used to overflow
  // and the guard passed (the error was then a negative position id).
  for (const std::int64_t big : {std::int64_t{2147483647}, std::int64_t{9223372036854775800}}) {
    o = options(64, {0, big});
    o.allow_long = true;
    expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
                 "positions overflow int32");
  }
  o = options(64, {0});
  o.allow_long = true;
  o.delta2 = INT64_MAX;
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "positions overflow int32");
  m.sequences[0][3] = 999;
  o = options(64, {0});
  o.allow_long = true;
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "outside the vocabulary");
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, {}, o); }, "no sequences");
  o.policies = {analysis::PositionPolicy::reset};
  expect_error([&] { analysis::measure_rope_drift(m.config, m.params, m.sequences, o); },
               "'reset' is not measured");

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
  const fs::path dir = fs::path(::testing::TempDir()) / "rope_drift_missing";
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
