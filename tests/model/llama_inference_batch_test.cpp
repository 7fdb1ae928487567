// Several sequences stepped together by model::LlamaInference give, bit for bit, the logits each
// gives stepped alone, whatever the sequences beside it, their order in the step, the sequences
// that sit a step out, and the thread count: random models of several shapes (GQA, MHA, MQA, a
// head_dim that is no multiple of 16, q/k/v and MLP biases, tied embeddings, bf16 weights read
// as bits, dynamic RoPE scaling that grows a sequence's base past max_position_embeddings). Plus
// the step's refusals. That single-sequence decoding computes transformers' logits is checked in
// checkpoint_test.cpp.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "anchorctx/model/llama_inference.h"
#include "eval/eval_test_models.h"
#include "support/error_of.h"

namespace anchorctx::model {
namespace {

LlamaModel random_model(const LlamaConfig& config, std::uint64_t seed) {
  const ParameterLayout layout = ParameterLayout::for_config(config);
  std::vector<float> params(layout.total());
  init_parameters(layout, config, seed, params);
  // Non-trivial norms and biases (initialised to 1 and 0), so a misplaced one shows.
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (const ParameterInfo& p : layout.params())
    if (p.shape.size() == 1)
      for (std::size_t i = p.offset; i < p.offset + p.size; ++i)
        params[i] += u(rng);
  return eval_test::model_from_params(config, layout, params);
}

std::vector<LlamaConfig> configs() {
  std::vector<LlamaConfig> out;
  LlamaConfig gqa = eval_test::tiny_config(53);
  out.push_back(gqa);
  LlamaConfig odd = gqa;  // MHA, head_dim 24, tied, every bias
  odd.num_attention_heads = odd.num_key_value_heads = 3;
  odd.head_dim = 24;
  odd.tie_word_embeddings = true;
  odd.attention_bias = odd.mlp_bias = true;
  out.push_back(odd);
  LlamaConfig qwen = gqa;  // q/k/v biases, a group of 4
  qwen.model_type = ModelType::qwen2;
  qwen.num_attention_heads = 8;
  qwen.num_key_value_heads = 2;
  qwen.head_dim = 8;
  out.push_back(qwen);
  LlamaConfig bf16 = gqa;  // its weights rounded to bf16 below: decode reads them as bits
  bf16.hidden_size = 40;
  out.push_back(bf16);
  LlamaConfig dynamic = gqa;  // MQA; the base grows per sequence past 12 positions
  dynamic.num_key_value_heads = 1;
  dynamic.max_position_embeddings = 12;
  dynamic.rope_scaling.type = RopeScalingType::dynamic;
  dynamic.rope_scaling.factor = 2.0;
  out.push_back(dynamic);
  return out;
}

std::vector<float> copy_of(std::span<const float> s) {
  return {s.begin(), s.end()};
}

TEST(LlamaInferenceBatch, EachSequenceGetsTheLogitsItGetsAlone) {
  for (const LlamaConfig& config : configs()) {
    SCOPED_TRACE(std::string(to_string(config.model_type)) + " heads " +
                 std::to_string(config.num_attention_heads) + "/" +
                 std::to_string(config.num_key_value_heads) + " head_dim " +
                 std::to_string(config.resolved_head_dim()));
    LlamaModel m = random_model(config, 7);
    if (config.hidden_size == 40) round_to_bf16(m.weights);
    const std::int64_t V = config.vocab_size;
    // Four token streams of different lengths; sequence s joins at step start[s].
    std::mt19937 rng(9);
    const std::vector<std::int64_t> lengths = {1, 23, 9, 30}, start = {0, 0, 4, 2};
    std::vector<std::vector<std::int32_t>> tokens(lengths.size());
    for (std::size_t s = 0; s < lengths.size(); ++s)
      for (std::int64_t i = 0; i < lengths[s]; ++i)
        tokens[s].push_back(static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(V)));

    // Alone: one LlamaInference per sequence, one token at a time.
    std::vector<std::vector<std::vector<float>>> alone(lengths.size());
    for (std::size_t s = 0; s < lengths.size(); ++s) {
      LlamaInference one(m);
      for (const std::int32_t t : tokens[s])
        alone[s].push_back(copy_of(one.step(t)));
    }

    for (const int threads : {1, 2}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      const int before = omp_get_max_threads();
      omp_set_num_threads(threads);
      LlamaInference together(m);
      together.adopt_caches(std::vector<KvCache>(lengths.size()));
      ASSERT_EQ(together.sequences(), static_cast<std::int64_t>(lengths.size()));
      std::vector<std::size_t> fed(lengths.size(), 0);
      for (std::int64_t step = 0;; ++step) {
        std::vector<DecodeFeed> feeds;
        for (std::size_t s = 0; s < lengths.size(); ++s)
          // Sequence 1 sits out every third step; the order of the feeds turns each step.
          if (step >= start[s] && fed[s] < tokens[s].size() && !(s == 1 && step % 3 == 2))
            feeds.push_back({static_cast<std::int64_t>(s), tokens[s][fed[s]]});
        bool done = true;
        for (std::size_t s = 0; s < lengths.size(); ++s)
          done = done && fed[s] == tokens[s].size();
        if (done) break;
        if (feeds.empty()) continue;
        std::rotate(feeds.begin(), feeds.begin() + step % static_cast<std::int64_t>(feeds.size()),
                    feeds.end());
        const std::span<const float> logits = together.step(feeds);
        ASSERT_EQ(logits.size(), feeds.size() * static_cast<std::size_t>(V));
        for (std::size_t i = 0; i < feeds.size(); ++i) {
          const std::size_t s = static_cast<std::size_t>(feeds[i].sequence);
          EXPECT_EQ(std::memcmp(logits.data() + i * static_cast<std::size_t>(V),
                                alone[s][fed[s]].data(), static_cast<std::size_t>(V) * 4),
                    0)
              << "sequence " << s << " token " << fed[s] << " at step " << step;
          ++fed[s];
        }
      }
      for (std::size_t s = 0; s < lengths.size(); ++s)
        EXPECT_EQ(together.position(static_cast<std::int64_t>(s)), lengths[s]);
      omp_set_num_threads(before);
    }
  }
}

TEST(LlamaInferenceBatch, RefusesWhatItCannotStep) {
  LlamaInference inference(random_model(eval_test::tiny_config(), 3));
  inference.adopt_caches(std::vector<KvCache>(2));
  const std::vector<DecodeFeed> twice = {{1, 5}, {1, 6}}, outside = {{2, 5}}, bad_token = {{0, 48}};
  EXPECT_NE(test::error_of([&] { inference.step(twice); }).find("sequence 1 fed twice"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { inference.step(outside); }).find("sequence 2 of 2"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { inference.step(bad_token); }).find("outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(
      test::error_of([&] { inference.step(std::span<const DecodeFeed>()); }).find("no tokens"),
      std::string::npos);
  // A refused step changed nothing.
  EXPECT_EQ(inference.position(0), 0);
  EXPECT_EQ(inference.position(1), 0);
  KvCache wrong;
  wrong.tokens = 1;
  EXPECT_NE(test::error_of([&] { inference.adopt_caches({wrong}); }).find("layers"),
            std::string::npos);
  EXPECT_EQ(inference.sequences(), 2);
}

}  // namespace
}  // namespace anchorctx::model
