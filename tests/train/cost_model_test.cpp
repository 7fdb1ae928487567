// The cost model of `anchorctx plan` (train/cost_model.h): each formula against a hand count on
// a small model, the memory against what the training model allocates, the masks' order, and
// the refusals. Small integers throughout, so every expected value below is exact in double.
#include "anchorctx/train/cost_model.h"

#include <gtest/gtest.h>

#include <string>

#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"
#include "support/error_of.h"

namespace anchorctx::train {
namespace {

using attention::MaskKind;

// hidden 64, intermediate 128, 2 layers, 4 heads over 2 kv heads of 16, vocabulary 100.
model::LlamaConfig small_config() {
  model::LlamaConfig c = model::preset("tiny");
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 100;
  c.bos_token_id.reset();
  c.eos_token_ids.clear();
  c.pad_token_id.reset();
  return c;
}

PlanSetup small_setup(int gpus, int sp) {
  PlanSetup s;
  s.config = small_config();
  s.seq_len = 512;  // 4 blocks of 128 rows: S = 2 and 4 cut it evenly
  s.gpus = gpus;
  s.sp = sp;
  s.comm_precision = model::Precision::fp32;
  return s;
}

// Round numbers, so that times are easy to count by hand.
HardwareProfile round_hardware() {
  HardwareProfile hw;
  hw.name = "test";
  hw.peak_tflops_bf16 = 1.0;  // 1e12 FLOP/s
  hw.peak_tflops_fp32 = 0.5;
  hw.gemm_efficiency = 0.5;
  hw.attention_efficiency = 0.25;
  hw.memory_bytes = std::int64_t{1} << 40;
  hw.memory_gbs = 100.0;
  hw.devices_per_node = 2;
  hw.intra_node_gbs = 10.0;
  hw.inter_node_gbs = 1.0;
  return hw;
}

AttentionWork made_up_work() {
  AttentionWork w;
  w.visible_pairs = 1000;
  w.computed_pairs = 1200;
  w.causal_pairs = 64.0 * 65 / 2;
  w.windows = 1;
  w.tile_size = 64;
  return w;
}

TEST(CostModel, FlopsMatchAHandCount) {
  // Matrix weights per layer: q 64x64, k, v 64x32, o 64x64, gate/up/down 3 x 64x128 = 36864;
  // x 2 layers + LM head 64 x 100 = 80128. S = 2: 256 tokens per rank.
  const PlanEstimate e = estimate_plan(small_setup(2, 2), made_up_work(), round_hardware());
  EXPECT_EQ(e.tokens_per_rank, 256);
  EXPECT_DOUBLE_EQ(e.flops.matmul, 6.0 * 80128 * 256);
  // 14 x pairs x D x (Hq / S = 2 heads) x 2 layers.
  EXPECT_DOUBLE_EQ(e.flops.attention, 14.0 * 1000 * 16 * 2 * 2);
  EXPECT_DOUBLE_EQ(e.flops.attention_computed, 14.0 * 1200 * 16 * 2 * 2);
  EXPECT_DOUBLE_EQ(e.flops.recompute, 0.0);

  PlanSetup s = small_setup(2, 2);
  s.checkpointing = true;
  s.grad_accum = 3;
  const PlanEstimate c = estimate_plan(s, made_up_work(), round_hardware());
  EXPECT_DOUBLE_EQ(c.flops.matmul, 3 * 6.0 * 80128 * 256);
  // A second forward of the layers (no LM head) and of the attention tiles, per window.
  EXPECT_DOUBLE_EQ(c.flops.recompute, 3 * (2.0 * (80128 - 6400) * 256 + 4.0 * 1200 * 16 * 2 * 2));
}

TEST(CostModel, AllToAllBytesFollowTheUlyssesFormula) {
  // S = 2, kv heads 2: no replication. Per layer forward a rank sends (S-1)/S of its
  // [256 tokens, q 64 + k 32 + v 32 + out 64] block, float32: 0.5 x 256 x 192 x 4.
  const PlanEstimate e = estimate_plan(small_setup(2, 2), made_up_work(), round_hardware());
  EXPECT_EQ(e.communication.kv_replication, 1);
  EXPECT_DOUBLE_EQ(e.communication.a2a_forward_per_layer, 0.5 * 256 * 192 * 4);
  EXPECT_DOUBLE_EQ(e.communication.a2a_backward_per_layer, 0.5 * 256 * 192 * 4);
  EXPECT_DOUBLE_EQ(e.communication.a2a_step, 2 * 0.5 * 256 * 192 * 4 * 2);  // 2 layers
  // Both ranks in one node (2 per node), at 10 GB/s: forward and backward each move the
  // whole block of each of the 2 layers, half of which leaves the rank.
  EXPECT_DOUBLE_EQ(e.time.all_to_all, 0.5 * 256 * 192 * 4 * 2 * 2 / 10e9);

  // S = 4 over 2 kv heads: each kv head goes to 2 ranks, so k and v leave as 4 heads' width;
  // bf16 on the wire. 128 tokens per rank: 0.75 x 128 x (64 + 2 x 64 + 64) x 2.
  PlanSetup s = small_setup(4, 4);
  s.comm_precision = model::Precision::bf16;
  const PlanEstimate r = estimate_plan(s, made_up_work(), round_hardware());
  EXPECT_EQ(r.communication.kv_replication, 2);
  EXPECT_DOUBLE_EQ(r.communication.a2a_forward_per_layer, 0.75 * 128 * 256 * 2);
  // Two nodes of 2: a quarter of the block goes to the node peer (10 GB/s), half to the other
  // node (1 GB/s), at once: the slower part sets the time.
  EXPECT_DOUBLE_EQ(r.time.all_to_all, 0.5 * 128 * 256 * 2 * 2 * 2 / 1e9);
  EXPECT_FALSE(r.notes.empty());
}

TEST(CostModel, GradientTrafficIsARingAllReduceOrZeroOne) {
  const std::int64_t P = model::parameter_count(small_config());
  // G = 4 (DP 4): ring all-reduce 2 (N-1)/N x P x 4 bytes; 4 ranks span two nodes of 2, so the
  // ring runs at the inter-node 1 GB/s.
  const PlanEstimate e = estimate_plan(small_setup(4, 1), made_up_work(), round_hardware());
  EXPECT_EQ(e.communication.gradient_ranks, 4);
  EXPECT_DOUBLE_EQ(e.communication.gradient_all_reduce, 2 * 0.75 * P * 4.0);
  EXPECT_DOUBLE_EQ(e.communication.a2a_step, 0.0);  // S = 1: no all-to-all
  EXPECT_DOUBLE_EQ(e.time.gradients, 2 * 0.75 * P * 4.0 / 1e9);

  PlanSetup s = small_setup(4, 2);  // DP 2 x SP 2: the SP ranks' gradients are partial too
  s.shard_optimizer = true;
  const PlanEstimate z = estimate_plan(s, made_up_work(), round_hardware());
  EXPECT_EQ(z.communication.gradient_ranks, 4);
  EXPECT_DOUBLE_EQ(z.communication.gradient_all_reduce, 0.0);
  EXPECT_DOUBLE_EQ(z.communication.zero_reduce_scatter, 0.75 * P * 4.0);
  EXPECT_DOUBLE_EQ(z.communication.zero_all_gather, 0.75 * P * 4.0);
  const auto flat =
      static_cast<std::int64_t>(model::ParameterLayout::for_config(small_config()).total());
  EXPECT_EQ(z.memory.optimizer, 8 * ((flat + 3) / 4));
  EXPECT_EQ(e.memory.optimizer, 8 * flat);
  EXPECT_EQ(z.memory.gradients, 4 * flat);  // the model writes the whole gradient buffer
}

TEST(CostModel, TimesAreFlopsOverRatesAndTheStepTheirSum) {
  PlanSetup s = small_setup(1, 1);
  s.precision = model::Precision::bf16;
  const HardwareProfile hw = round_hardware();
  const PlanEstimate e = estimate_plan(s, made_up_work(), hw);
  EXPECT_DOUBLE_EQ(e.time.matmul, 6.0 * 80128 * 512 / (1e12 * 0.5));
  EXPECT_DOUBLE_EQ(e.time.attention, 14.0 * 1200 * 16 * 4 * 2 / (1e12 * 0.25));
  EXPECT_DOUBLE_EQ(e.time.all_to_all, 0.0);
  EXPECT_DOUBLE_EQ(e.time.gradients, 0.0);  // one rank: nothing to reduce
  const auto flat = static_cast<double>(model::ParameterLayout::for_config(s.config).total());
  EXPECT_DOUBLE_EQ(e.time.optimizer, flat * 32 / 100e9);
  EXPECT_DOUBLE_EQ(e.time.total(), e.time.matmul + e.time.attention + e.time.optimizer);
  EXPECT_DOUBLE_EQ(e.tokens_per_second, 512 / e.time.total());
  EXPECT_DOUBLE_EQ(e.mfu, e.flops.model() / (e.time.total() * 1e12));
}

TEST(CostModel, OneRankMemoryIsWhatTheTrainerAllocates) {
  for (const model::Precision precision : {model::Precision::fp32, model::Precision::bf16})
    for (const bool checkpointing : {false, true}) {
      SCOPED_TRACE(std::string(model::to_string(precision)) +
                   (checkpointing ? " checkpointing" : ""));
      PlanSetup s = small_setup(1, 1);
      s.seq_len = 356;
      s.precision = precision;
      s.checkpointing = checkpointing;
      s.loss_chunk = 48;
      model::RunOptions run;
      run.precision = precision;
      run.rope_mode = model::default_rope_mode(precision);
      run.checkpointing = checkpointing;
      run.loss_chunk = 48;
      const model::LlamaTrainModel model(s.config, run);
      const PlanEstimate e = estimate_plan(s, made_up_work(), round_hardware());
      EXPECT_EQ(e.memory.step_buffers, model.activation_bytes(356));
      EXPECT_EQ(e.memory.parameters, static_cast<std::int64_t>(4 * model.params().size()));
      EXPECT_EQ(e.memory.gradients, static_cast<std::int64_t>(4 * model.grads().size()));
      EXPECT_EQ(e.memory.ulysses_staging, 0);
      EXPECT_EQ(e.memory.weight_copy, precision == model::Precision::bf16
                                          ? static_cast<std::int64_t>(4 * model.params().size())
                                          : 0);
      // S = 2 cuts 3 blocks of 128 rows as training does: 128 tokens on rank 0, 228 (a block
      // and the tail) on rank 1; the model's list at the larger, plus the all-to-all buffers.
      PlanSetup sp = s;
      sp.gpus = sp.sp = 2;
      const PlanEstimate h = estimate_plan(sp, made_up_work(), round_hardware());
      EXPECT_EQ(h.memory.step_buffers, model.activation_bytes(228));
      EXPECT_EQ(h.memory.ulysses_staging, 2 * 4 * 228 * (64 + 2 * 32));
    }
}

TEST(CostModel, AttentionWorkCountsTheMaskOnThePlan) {
  // One window of 256 tokens: the anchor, then 3 documents of 85.
  const auto layout = attention::AttentionLayout::from_document_lengths({{1, 85, 85, 85}}, 1);
  const AttentionWork causal = attention_work(layout, MaskKind::causal, 64);
  const AttentionWork intra = attention_work(layout, MaskKind::intra_doc, 64);
  const AttentionWork anchor = attention_work(layout, MaskKind::anchor, 64);
  EXPECT_DOUBLE_EQ(causal.visible_pairs, 256.0 * 257 / 2);
  EXPECT_DOUBLE_EQ(causal.causal_pairs, 256.0 * 257 / 2);
  EXPECT_DOUBLE_EQ(intra.visible_pairs, 1 + 3 * (85.0 * 86 / 2));
  EXPECT_DOUBLE_EQ(anchor.visible_pairs, intra.visible_pairs + 255);  // the anchor column
  // Causal visits the 10 tiles on and under the diagonal of a 4 x 4 grid, all of 64 x 64.
  EXPECT_EQ(causal.visited_tiles, 10);
  EXPECT_DOUBLE_EQ(causal.computed_pairs, 10.0 * 64 * 64);
  EXPECT_EQ(causal.partial_tiles, 4);
  // The tiles computed cover the visible pairs and grow with what the mask shows.
  for (const AttentionWork* w : {&causal, &intra, &anchor})
    EXPECT_GE(w->computed_pairs, w->visible_pairs);
  EXPECT_LE(intra.computed_pairs, anchor.computed_pairs);
  EXPECT_LT(anchor.computed_pairs, causal.computed_pairs);
}

TEST(CostModel, MaskedAttentionCostsLessThanCausalOnLongWindows) {
  // 8 windows of 16K with documents of median 1024: anchor adds only the anchor column to
  // intra_doc, and both are a small part of causal.
  const auto windows =
      sample_windows(data::parse_doc_length_spec("lognormal:1024:1.0"), 8, 16384, 0);
  PlanSetup s = small_setup(8, 4);
  s.seq_len = 16384;
  const HardwareProfile hw = round_hardware();
  const PlanEstimate causal = estimate_plan(s, attention_work(windows, MaskKind::causal, 128), hw);
  const PlanEstimate intra =
      estimate_plan(s, attention_work(windows, MaskKind::intra_doc, 128), hw);
  const PlanEstimate anchor = estimate_plan(s, attention_work(windows, MaskKind::anchor, 128), hw);
  EXPECT_LE(intra.flops.attention, anchor.flops.attention);
  EXPECT_LT(anchor.flops.attention, 0.5 * causal.flops.attention);
  EXPECT_LT(anchor.time.total(), causal.time.total());
  EXPECT_DOUBLE_EQ(anchor.flops.matmul, causal.flops.matmul);  // the mask does not touch GEMMs
}

TEST(CostModel, RefusesWhatUlyssesCannotSplitNamingTheNumbers) {
  const AttentionWork w = made_up_work();
  const HardwareProfile hw = round_hardware();
  const auto message = [&](int gpus, int sp) {
    return test::error_of([&] { estimate_plan(small_setup(gpus, sp), w, hw); });
  };
  const auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  // 4 heads: S = 8 is past them.
  const std::string past = message(8, 8);
  EXPECT_TRUE(has(past, "--sp 8") && has(past, "4 attention heads")) << past;
  const std::string uneven = message(6, 4);
  EXPECT_TRUE(has(uneven, "--gpus 6") && has(uneven, "--sp 4")) << uneven;
  EXPECT_TRUE(has(message(3, 3), "does not divide the model's 4 attention heads")) << message(3, 3);
  EXPECT_TRUE(has(message(0, 1), "--gpus 0")) << message(0, 1);
  // The GQA rule: 12 heads over 4 kv heads split 6 ways: 4 % 6 and 6 % 4 are both nonzero.
  PlanSetup gqa = small_setup(6, 6);
  gqa.config.num_attention_heads = 12;
  gqa.config.num_key_value_heads = 4;
  const std::string kv = test::error_of([&] { estimate_plan(gqa, w, hw); });
  EXPECT_TRUE(has(kv, "--sp 6") && has(kv, "4 kv heads")) << kv;
  gqa.sp = 2;  // 4 kv heads over 2 ranks: fine
  EXPECT_EQ(test::error_of([&] { estimate_plan(gqa, w, hw); }), "");
  PlanSetup short_window = small_setup(4, 4);
  short_window.seq_len = 3;
  EXPECT_TRUE(has(test::error_of([&] { estimate_plan(short_window, w, hw); }), "--seq-len 3"));
  // Names: a preset and a hardware profile nobody defined.
  EXPECT_TRUE(has(test::error_of([] { model::preset("llama9-1t"); }), "llama2-7b"));
  const std::string hw_error = test::error_of([] { hardware_profile("tpu-v9"); });
  EXPECT_TRUE(has(hw_error, "tpu-v9") && has(hw_error, "a100-nvlink") && has(hw_error, "cpu-local"))
      << hw_error;
}

TEST(CostModel, PaperSetupIsCountedAsTheFormulasSay) {
  // LLaMA-2-7B, 64K window, 8 ranks of Ulysses: 8192 tokens per rank; per layer forward a rank
  // sends 7/8 of [8192, 4 x 4096] bf16 values. 32 heads: S = 32 is the last that splits.
  PlanSetup s;
  s.config = model::preset("llama2-7b");
  s.seq_len = 65536;
  s.gpus = 8;
  s.sp = 8;
  s.comm_precision = model::Precision::bf16;
  AttentionWork w = made_up_work();
  const HardwareProfile a100 = hardware_profile("a100-nvlink");
  const PlanEstimate e = estimate_plan(s, w, a100);
  EXPECT_EQ(e.tokens_per_rank, 8192);
  EXPECT_DOUBLE_EQ(e.communication.a2a_forward_per_layer, 7.0 / 8 * 8192 * 4 * 4096 * 2);
  EXPECT_EQ(e.parameters, 6738415616);
  s.gpus = s.sp = 32;
  EXPECT_EQ(test::error_of([&] { estimate_plan(s, w, a100); }), "");
  s.gpus = s.sp = 64;
  EXPECT_NE(test::error_of([&] { estimate_plan(s, w, a100); }), "");
}

}  // namespace
}  // namespace anchorctx::train
