// The batched prefill: per-token losses equal the training forward's on packed windows with
// documents and anchors; prefill + KV-cache decode gives the tokens token-by-token decoding
// gives (a trained tiny model, and the real stories260K model when ../shared/data has it).
#include "anchorctx/eval/prefill.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/model/llama2c.h"
#include "eval/eval_test_models.h"
#include "support/llama2c_tokenizer.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::eval {
namespace {

// Two windows of 150 and 97 tokens, documents inside, shared anchor, anchor mask: the per-token
// losses of the prefill are the training forward's (from its logits, in float64).
// bf16 runs both ways: emulated (the reference) and, where the CPU has it, native (the training
// forward's native GEMMs and attention kernels; skipped, and said, where unavailable).
TEST(Prefill, TokenLossesEqualTrainingForward) {
  std::string why;
  const bool native = model::native_bf16_available(&why);
  if (!native)
    std::printf("[ note ] native bf16 unavailable here (%s): bf16 emulated only\n", why.c_str());
  for (const auto& [precision, compute] :
       std::vector<std::pair<model::Precision, model::Bf16Compute>>{
           {model::Precision::fp32, model::Bf16Compute::emulated},
           {model::Precision::bf16, model::Bf16Compute::emulated},
           {model::Precision::bf16, model::Bf16Compute::native}}) {
    if (compute == model::Bf16Compute::native && !native) continue;
    SCOPED_TRACE(std::string(model::to_string(precision)) + " " +
                 std::string(model::to_string(compute)));
    const model::LlamaConfig config = eval_test::tiny_config();
    model::RunOptions run;
    run.precision = precision;
    run.rope_mode = model::default_rope_mode(precision);
    run.bf16_compute = compute;
    model::LlamaTrainModel train(config, run);
    model::init_parameters(train.layout(), config, 3, train.params());
    const model::LlamaModel weights =
        eval_test::model_from_params(config, train.layout(), train.params());

    std::vector<std::int32_t> a(151), b(98);
    for (std::size_t i = 0; i < a.size(); ++i)
      a[i] = static_cast<std::int32_t>(3 + (i * 7 + i / 5) % 45);
    for (std::size_t i = 0; i < b.size(); ++i)
      b[i] = static_cast<std::int32_t>(3 + (i * 13) % 45);
    const std::vector<std::uint32_t> docs_a = {0, 40, 101}, docs_b = {0, 60};
    const std::vector<std::uint32_t> spans_b = {10, 14};
    const train::RawWindow windows[] = {{a, docs_a, {}}, {b, docs_b, spans_b}};
    const train::Batch batch =
        train::make_batch(windows, data::AnchorMode::shared,
                          {attention::MaskKind::anchor, rope::PositionPolicy::anchor, true});
    const std::int64_t T = static_cast<std::int64_t>(batch.input_ids.size());
    std::vector<float> logits(static_cast<std::size_t>(T * config.vocab_size), std::nanf(""));
    const model::LossSum expected = train.forward(batch.view(), logits);

    Prefill prefill(weights, {precision, 64, 0, 4096, compute});
    PrefillRequest request;
    request.input_ids = batch.input_ids;
    request.position_ids = batch.position_ids;
    request.plan = &batch.plan;
    request.targets = batch.targets;
    const PrefillResult result = prefill.run(request);
    ASSERT_EQ(result.token_loss.size(), static_cast<std::size_t>(T));
    double sum = 0.0;
    std::int64_t counted = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      const std::int32_t target = batch.targets[static_cast<std::size_t>(t)];
      if (target < 0) {
        EXPECT_TRUE(std::isnan(result.token_loss[static_cast<std::size_t>(t)])) << t;
        continue;
      }
      const float* l = logits.data() + t * config.vocab_size;
      double m = l[0], s = 0.0;
      for (std::int64_t v = 0; v < config.vocab_size; ++v)
        m = std::max(m, static_cast<double>(l[v]));
      for (std::int64_t v = 0; v < config.vocab_size; ++v)
        s += std::exp(static_cast<double>(l[v]) - m);
      const double want = m + std::log(s) - l[target];
      EXPECT_NEAR(result.token_loss[static_cast<std::size_t>(t)], want, 1e-4) << "token " << t;
      sum += result.token_loss[static_cast<std::size_t>(t)];
      ++counted;
    }
    EXPECT_EQ(counted, expected.tokens);
    EXPECT_NEAR(sum, expected.loss, 1e-5 * expected.loss) << model::to_string(precision);
  }
}

TEST(Prefill, RefusesMalformedRequests) {
  const model::LlamaModel m = eval_test::random_tiny_model();
  Prefill prefill(m);
  const attention::BlockPlan plan = causal_plan(4);
  const std::vector<std::int32_t> ids = {1, 2, 3, 4}, pos = {0, 1, 2, 3}, bad = {0, 1, 2};
  EXPECT_THROW(prefill.run({ids, bad, &plan, {}, false, false}), Error);
  const std::vector<std::int32_t> targets = {1, 2, 3, 99};
  EXPECT_THROW(prefill.run({ids, pos, &plan, targets, false, false}), Error);
  const std::vector<std::int32_t> out_of_vocab = {1, 2, 3, 48};
  EXPECT_THROW(prefill.run({out_of_vocab, pos, &plan, {}, false, false}), Error);
}

// bf16 precision rounds the engine's model once: the decoder steps on bf16 weights (docs/EVAL.md),
// and the prefill computes what it computes from the unrounded weights (its own rounded copy).
TEST(Prefill, Bf16PrecisionRoundsTheEnginesWeights) {
  const model::LlamaModel m = eval_test::random_tiny_model(5);
  ASSERT_FALSE(model::holds_bf16_values(m.weights));
  model::LlamaWeights rounded = m.weights;
  model::round_to_bf16(rounded);
  ASSERT_TRUE(model::holds_bf16_values(rounded));
  Engine fp32(m);
  EXPECT_EQ(fp32.model().weights.layers[0].q_proj, m.weights.layers[0].q_proj);
  Engine bf16(m, {model::Precision::bf16});
  EXPECT_TRUE(model::holds_bf16_values(bf16.model().weights));
  EXPECT_EQ(bf16.model().weights.layers[1].down_proj, rounded.layers[1].down_proj);
  EXPECT_EQ(bf16.model().weights.embed_tokens, rounded.embed_tokens);

  const std::vector<std::int32_t> ids = {1, 7, 9, 30, 12, 44, 3}, pos = {0, 1, 2, 3, 4, 5, 6};
  const attention::BlockPlan plan = causal_plan(7);
  const PrefillRequest request{ids, pos, &plan, {}, true, true};
  Prefill own_copy(m, {model::Precision::bf16});
  const PrefillResult a = own_copy.run(request), b = bf16.prefill().run(request);
  EXPECT_EQ(a.last_logits, b.last_logits);
  EXPECT_EQ(a.keys, b.keys);

  // The decoder keeps bf16 bits of a model of bf16 values, which the engine's native prefill
  // uses instead of its own copy: the same results as a prefill that converts its own.
  const model::LlamaInference decoder(bf16.model());
  EXPECT_NE(decoder.bf16_bits(decoder.model().weights.layers[1].up_proj), nullptr);
  EXPECT_NE(decoder.bf16_bits(decoder.model().weights.output_matrix()), nullptr);
  EXPECT_EQ(decoder.bf16_bits(rounded.layers[1].up_proj), nullptr);  // another array
  EXPECT_EQ(model::LlamaInference(m).bf16_bits(m.weights.layers[0].q_proj), nullptr);
  if (!model::native_bf16_available()) GTEST_SKIP() << "no native bf16 on this CPU";
  const PrefillOptions native{model::Precision::bf16, 1024, 0, 4096, model::Bf16Compute::native};
  Engine shared(m, native);
  Prefill converts(bf16.model(), native);
  const PrefillResult c = converts.run(request), d = shared.prefill().run(request);
  EXPECT_EQ(c.last_logits, d.last_logits);
  EXPECT_EQ(c.keys, d.keys);
}

// Prefill then KV-cache decode = token-by-token decode, on a model trained in the test; the
// prompt spans several 64-token tiles and ends mid-tile.
TEST(Prefill, DecodeAfterPrefillMatchesStepwise) {
  Engine engine(eval_test::trained_tiny_model());
  std::vector<std::int32_t> prompt = {1};
  const std::vector<std::int32_t> body = eval_test::pattern(200);
  prompt.insert(prompt.end(), body.begin(), body.end());
  const std::vector<std::int32_t> stop = {2};
  const std::vector<std::int32_t> stepwise = engine.greedy_stepwise(prompt, 40, stop);
  const std::vector<std::int32_t> fast = engine.greedy(prompt, 40, stop);
  ASSERT_EQ(stepwise.size(), 40u);
  EXPECT_EQ(fast, stepwise);
  // The model learned the pattern: the continuation is the cycle (so the comparison is of
  // confident choices, not of near-ties).
  EXPECT_EQ(stepwise, eval_test::pattern(40, 200));
}

TEST(Prefill, Stories260kDecodeAfterPrefillMatchesStepwise) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(checkpoint, "stories260k/stories260K.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer_file, "stories260k/tok512.bin");
  test::TempDir dir;
  const std::filesystem::path folder = dir.path() / "stories260K";
  model::import_llama2c(checkpoint, test::llama2c_tokenizer_file(tokenizer_file), folder);
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(folder.string());
  Engine engine(model::load_llama_model(folder));
  std::vector<std::int32_t> prompt = {1};
  const std::vector<std::int32_t> text = tokenizer->encode(
      "Once upon a time, there was a little dog named Max. Max liked to run in the park with "
      "his friend Sue. One day, Sue found a big red ball under a tree.");
  prompt.insert(prompt.end(), text.begin(), text.end());
  const std::vector<std::int32_t> stop = {2};
  const std::vector<std::int32_t> stepwise = engine.greedy_stepwise(prompt, 120, stop);
  const std::vector<std::int32_t> fast = engine.greedy(prompt, 120, stop);
  EXPECT_GE(stepwise.size(), 50u);
  EXPECT_EQ(fast, stepwise) << "stepwise: " << tokenizer->decode(stepwise)
                            << "\nprefill:  " << tokenizer->decode(fast);
}

}  // namespace
}  // namespace anchorctx::eval
