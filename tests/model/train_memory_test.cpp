// The training model's buffer list (LlamaTrainModel::step_buffers, llm.c's activation sizes)
// against what a step really keeps allocated, counted by the test executable's operator new,
// and against the table in docs/TRAINING.md.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/model/llama_train.h"
#include "support/allocation_counter.h"
#include "support/tiny_config.h"

namespace anchorctx::model {
namespace {

struct Case {
  Precision precision;
  bool checkpointing;
  bool backward;
  std::string name() const {
    return fmt::format("{} checkpointing={} backward={}", to_string(precision), checkpointing,
                       backward);
  }
};

// Bytes of the buffers a call keeps: all, or those a forward alone allocates.
std::int64_t listed_bytes(const std::vector<StepBuffer>& buffers, bool backward) {
  std::int64_t bytes = 0;
  for (const StepBuffer& b : buffers)
    if (backward || !b.backward) bytes += b.bytes();
  return bytes;
}

// What the first call of a fresh model holds afterwards. Run on a new thread: the LM head's
// per-thread chunk scratch starts empty there, as the list assumes (and OpenMP's own pools are
// malloc'ed, not counted).
std::int64_t bytes_held_by_first_call(const Case& c, std::int64_t T, std::int64_t chunk,
                                      std::int64_t* listed) {
  std::int64_t held = -1;
  std::thread([&] {
    // One thread: a new thread's OpenMP team would spin against the previous one's on a
    // loaded machine (seconds per case); the buffers do not depend on the thread count.
    omp_set_num_threads(1);
    LlamaConfig config = test::tiny_config();
    // Widths that differ from each other, so a buffer sized by the wrong one shows.
    config.hidden_size = 48;
    config.intermediate_size = 80;
    config.num_hidden_layers = 3;
    config.num_attention_heads = 6;
    config.num_key_value_heads = 2;
    config.head_dim = 16;
    config.vocab_size = 101;
    RunOptions run;
    run.precision = c.precision;
    run.rope_mode = default_rope_mode(c.precision);
    run.checkpointing = c.checkpointing;
    run.loss_chunk = chunk;
    LlamaTrainModel model(config, run);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float& p : model.params())
      p = normal(rng);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T)), positions(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
      ids[i] = static_cast<std::int32_t>((i * 37) % 101);
    std::iota(positions.begin(), positions.end(), 0);
    // Every token targeted: the LM head's chunk is min(loss_chunk, T) rows.
    const std::vector<std::int32_t> targets = ids;
    const std::int32_t t32 = static_cast<std::int32_t>(T);
    const attention::BlockPlan plan = attention::BlockPlan::build(
        attention::AttentionLayout::from_arrays(
            std::vector<std::int32_t>{0, t32}, std::vector<std::int32_t>{0, 2},
            std::vector<std::int32_t>{0, t32 / 3}, std::vector<std::int32_t>{1}),
        attention::MaskKind::anchor, 16);
    const TrainBatch batch{ids, targets, positions, &plan};
    *listed = listed_bytes(model.step_buffers(T), c.backward);

    const std::int64_t before = test::live_new_bytes();
    if (c.backward) {
      model.forward_backward(batch, 1.0);
    } else {
      model.forward(batch);
    }
    held = test::live_new_bytes() - before;
  }).join();
  return held;
}

// Emulated GEMMs only: native ones also fill oneDNN's process-wide primitive cache and its
// per-thread scratch on first use, which no per-step list can hold; their buffers' sizes are
// checked against the list by the docs table test below and their use by bf16_native_test.cpp.
TEST(TrainMemory, TheBufferListIsWhatAStepKeepsAllocated) {
  for (const Precision precision : {Precision::fp32, Precision::bf16})
    for (const bool checkpointing : {false, true})
      for (const bool backward : {true, false}) {
        const Case c{precision, checkpointing, backward};
        SCOPED_TRACE(c.name());
        // 70 tokens in chunks of 32 (several chunks, the last partial); and a batch shorter
        // than a chunk.
        for (const auto& [T, chunk] : {std::pair<std::int64_t, std::int64_t>{70, 32}, {20, 32}}) {
          std::int64_t listed = 0;
          const std::int64_t held = bytes_held_by_first_call(c, T, chunk, &listed);
          EXPECT_EQ(held, listed) << "T " << T << " chunk " << chunk;
        }
      }
}

TEST(TrainMemory, EstimateIsTheSumOfTheList) {
  LlamaConfig config = test::tiny_config();
  RunOptions run;
  run.loss_chunk = 64;
  const LlamaTrainModel model(config, run);
  const std::int64_t T = 1000;
  std::int64_t sum = 0;
  for (const StepBuffer& b : model.step_buffers(T))
    sum += 4 * b.copies * b.elements;
  EXPECT_EQ(model.activation_bytes(T), sum);
  // The per-layer activations by hand: 3 [T, H], 2 [T, qd], 2 [T, kvd], 3 [T, I], 2 [T], [Hq, T].
  const std::int64_t H = 32, qd = 32, kvd = 16, I = 64, Hq = 4, L = 2;
  std::int64_t layer = 0;
  for (const StepBuffer& b : model.step_buffers(T))
    if (b.name.starts_with("layer.")) {
      EXPECT_EQ(b.copies, L) << b.name;
      layer += b.elements;
    }
  EXPECT_EQ(layer, T * (3 * H + 2 * qd + 2 * kvd + 3 * I + 2 + Hq));
}

// The table in docs/TRAINING.md has one row per buffer, in the list's order, with its shape.
TEST(TrainMemory, DocsTableIsTheList) {
  const std::filesystem::path doc =
      std::filesystem::path(ANCHORCTX_TESTS_DIR) / ".." / "docs" / "TRAINING.md";
  std::ifstream in(doc);
  ASSERT_TRUE(in.good()) << doc;
  // The rows of the table in the section "## Memory of a step".
  std::vector<std::string> rows;
  bool in_section = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("## ")) in_section = line == "## Memory of a step";
    if (in_section && line.starts_with("| `")) rows.push_back(line);
  }

  // bf16 with checkpointing and native GEMMs: every buffer of the list exists. Where native is
  // unavailable its rows (those whose note starts "native bf16" in the table) are left out of
  // the comparison.
  RunOptions run;
  run.precision = Precision::bf16;
  run.rope_mode = default_rope_mode(run.precision);
  run.checkpointing = true;
  const bool native = native_bf16_available();
  if (native) run.bf16_compute = Bf16Compute::native;
  if (!native)
    std::erase_if(rows, [](const std::string& row) {
      return row.find("| native bf16") != std::string::npos;
    });
  const LlamaTrainModel model(test::tiny_config(), run);
  const std::vector<StepBuffer> buffers = model.step_buffers(100);
  ASSERT_EQ(rows.size(), buffers.size());
  for (std::size_t i = 0; i < buffers.size(); ++i)
    EXPECT_TRUE(
        rows[i].starts_with(fmt::format("| `{}` | `{}` |", buffers[i].name, buffers[i].shape)))
        << "row " << i << ": " << rows[i];
}

}  // namespace
}  // namespace anchorctx::model
