// Several prompts of different lengths prefilled as one varlen batch give, bit for bit, what each
// prompt prefilled alone gives (keys, values, last-token logits), and Engine::greedy_batch the
// same answers as greedy() one at a time: a random tiny model with awkward lengths (1, tile
// edges, several tiles), and stories260K when ../shared/data has it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "anchorctx/core/random.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/model/llama2c.h"
#include "eval/eval_test_models.h"
#include "support/llama2c_tokenizer.h"
#include "support/shared_data.h"
#include "support/temp_dir.h"

namespace anchorctx::eval {
namespace {

std::vector<std::int32_t> random_prompt(std::int64_t length, std::int64_t vocab,
                                        std::uint64_t seed) {
  std::vector<std::int32_t> p = {1};
  std::uint64_t state = seed;
  while (static_cast<std::int64_t>(p.size()) < length)
    p.push_back(3 + static_cast<std::int32_t>(core::bits_below(
                        core::splitmix64(state), static_cast<std::uint64_t>(vocab - 3))));
  return p;
}

bool same_bits(const std::vector<float>& a, const float* b, std::size_t n) {
  return a.size() == n && std::memcmp(a.data(), b, n * sizeof(float)) == 0;
}

PrefillResult prefill(Prefill& p, const std::vector<std::int64_t>& lengths,
                      const std::vector<std::int32_t>& ids) {
  std::vector<std::int32_t> positions;
  for (const std::int64_t l : lengths)
    for (std::int64_t i = 0; i < l; ++i)
      positions.push_back(static_cast<std::int32_t>(i));
  const attention::BlockPlan plan = causal_plan(lengths);
  PrefillRequest r;
  r.input_ids = ids;
  r.position_ids = positions;
  r.plan = &plan;
  r.keep_cache = true;
  r.last_logits = true;
  return p.run(r);
}

TEST(BatchedPrefill, KeysValuesAndLogitsEqualOneAtATime) {
  const model::LlamaModel m = eval_test::random_tiny_model(11);
  // Row chunks of 64: prompts of several chunks, cut mid-prompt; 512: whole prompts per GEMM.
  // Native bf16 too where the CPU has it: its GEMMs (oneDNN) and attention kernels must not
  // make a prompt's numbers depend on its batch either.
  const model::Bf16Compute native =
      model::native_bf16_available() ? model::Bf16Compute::native : model::Bf16Compute::emulated;
  for (const auto& [precision, row_chunk, compute] :
       std::vector<std::tuple<model::Precision, std::int64_t, model::Bf16Compute>>{
           {model::Precision::fp32, 512, model::Bf16Compute::emulated},
           {model::Precision::fp32, 64, model::Bf16Compute::emulated},
           {model::Precision::bf16, 64, model::Bf16Compute::emulated},
           {model::Precision::bf16, 64, native},
           {model::Precision::bf16, 512, native}}) {
    SCOPED_TRACE(std::string(model::to_string(precision)) + " " +
                 std::string(model::to_string(compute)) + " rows " + std::to_string(row_chunk));
    Prefill p(m, {precision, 1024, 0, row_chunk, compute});
    const std::vector<std::int64_t> lengths = {1, 63, 64, 65, 200, 130, 7};
    std::vector<std::vector<std::int32_t>> prompts;
    std::vector<std::int32_t> all;
    for (std::size_t i = 0; i < lengths.size(); ++i) {
      prompts.push_back(random_prompt(lengths[i], m.config.vocab_size, 100 + i));
      all.insert(all.end(), prompts.back().begin(), prompts.back().end());
    }
    const PrefillResult batch = prefill(p, lengths, all);
    const std::int64_t kvd = m.config.kv_dim(), V = m.config.vocab_size;
    std::int64_t begin = 0;
    for (std::size_t i = 0; i < lengths.size(); ++i) {
      SCOPED_TRACE("prompt " + std::to_string(i) + " of " + std::to_string(lengths[i]) + " tokens");
      const PrefillResult alone = prefill(p, {lengths[i]}, prompts[i]);
      EXPECT_TRUE(same_bits(alone.last_logits,
                            batch.last_logits.data() + static_cast<std::int64_t>(i) * V,
                            static_cast<std::size_t>(V)));
      for (std::size_t l = 0; l < alone.keys.size(); ++l) {
        const std::size_t n = static_cast<std::size_t>(lengths[i] * kvd);
        EXPECT_TRUE(same_bits(alone.keys[l], batch.keys[l].data() + begin * kvd, n))
            << "layer " << l;
        EXPECT_TRUE(same_bits(alone.values[l], batch.values[l].data() + begin * kvd, n))
            << "layer " << l;
      }
      begin += lengths[i];
    }
  }
}

TEST(BatchedPrefill, GreedyBatchEqualsGreedyOneAtATime) {
  Engine engine(eval_test::trained_tiny_model());
  std::vector<std::vector<std::int32_t>> prompts;
  for (const std::int64_t length : {201, 40, 129, 64}) {
    std::vector<std::int32_t> p = {1};
    const std::vector<std::int32_t> body = eval_test::pattern(length - 1, length);
    p.insert(p.end(), body.begin(), body.end());
    prompts.push_back(std::move(p));
  }
  prompts.push_back(random_prompt(90, 48, 5));  // no pattern: a less confident continuation
  const std::vector<std::int32_t> stop = {2};
  std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
  const auto batch = engine.greedy_batch(spans, 24, stop);
  ASSERT_EQ(batch.size(), prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(batch[i], engine.greedy(prompts[i], 24, stop)) << "prompt " << i;
    EXPECT_FALSE(batch[i].empty());
  }
  EXPECT_TRUE(engine.greedy_batch({}, 4, stop).empty());
}

TEST(BatchedPrefill, Stories260kGreedyBatchEqualsGreedy) {
  ANCHORCTX_SHARED_DATA_OR_SKIP(checkpoint, "stories260k/stories260K.bin");
  ANCHORCTX_SHARED_DATA_OR_SKIP(tokenizer_file, "stories260k/tok512.bin");
  test::TempDir dir;
  const std::filesystem::path folder = dir.path() / "stories260K";
  model::import_llama2c(checkpoint, test::llama2c_tokenizer_file(tokenizer_file), folder);
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(folder.string());
  Engine engine(model::load_llama_model(folder));
  std::vector<std::vector<std::int32_t>> prompts;
  for (const char* text : {"Once upon a time, there was a little dog named Max.",
                           "Lily and her mom went to the park. They saw a big tree with red apples "
                           "and a small bird that sang a happy song.",
                           "Tom"}) {
    std::vector<std::int32_t> p = {1};
    const std::vector<std::int32_t> t = tokenizer->encode(text);
    p.insert(p.end(), t.begin(), t.end());
    prompts.push_back(std::move(p));
  }
  const std::vector<std::int32_t> stop = {2};
  std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
  const auto batch = engine.greedy_batch(spans, 60, stop);
  for (std::size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(batch[i], engine.greedy(prompts[i], 60, stop)) << tokenizer->decode(batch[i]);
}

}  // namespace
}  // namespace anchorctx::eval
