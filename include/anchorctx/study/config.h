// The settings of `anchorctx study` (docs/STUDY.md): the paper's context-extension experiment at
// small scale. One struct holds every number the study uses, so the study folder records it
// (study.json) and a rerun on the same folder can refuse other settings by name.
//
// Three profiles: the default (the `tiny` study of docs/STUDY.md: a stage 0 long enough to learn
// the key-value lookup, the whole study within 90 minutes of a 2-core AVX-512 machine), `quick` (a
// pipeline check for CI: tiny model, few steps, one seed) and `scaled(x)` (steps, corpus and
// samples times x, for a machine with more time). configs/study-small.toml holds the first
// study's settings (the 10.5M `small` model, whose stage 0 stays short of the lookup).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/attention/mask.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/rope/positions.h"
#include "anchorctx/rope/rope.h"

namespace anchorctx::study {

// One way of training stage 1. The four bf16 variants are the paper's table rows; the controls
// isolate precision (fp32, or exact RoPE in bf16).
struct Variant {
  std::string name;   // folder and table name: full, intra_cont, intra_reset, anchor, ...
  std::string label;  // the table's row label
  attention::MaskKind mask = attention::MaskKind::causal;
  rope::PositionPolicy positions = rope::PositionPolicy::global;
  model::Precision precision = model::Precision::bf16;
  rope::RopeMode rope_mode = rope::RopeMode::hf_bf16;
  bool control = false;  // precision control: trained with one seed (the first)
};

// Every variant the study knows, bf16 table rows first, then the controls.
const std::vector<Variant>& all_variants();
const Variant* find_variant(const std::string& name);

struct StudyConfig {
  std::string preset = "tiny";  // model preset of stage 0 (0.8M parameters)
  // Corpus (the built-in generator, data/builtin_corpus.h).
  std::uint64_t corpus_seed = 1234;
  double retrieval_fraction = 0.5;          // key-value documents: the skill retrieval tasks test
  std::int64_t stage0_documents = 120000;   // about 62,000 windows of 512 (48,000 used)
  std::int64_t stage0_median_chars = 200;   // about 4 keys per retrieval document
  std::int64_t stage1_documents = 400;      // about 370 windows of 4096
  std::int64_t stage1_median_chars = 3000;  // long documents upsampled (the paper's 128K mix)
  std::int64_t stage1_max_chars = 24000;
  // Stage 0: plain causal pretraining at the short window, bf16.
  std::int32_t stage0_seq_len = 512;
  std::int64_t stage0_steps = 6000;  // 24.6M tokens: past the copying plateau
  std::int64_t stage0_batch_windows = 8;
  double stage0_lr = 2e-3;
  double stage0_rope_theta = 10000.0;
  // Stage 1: continued training at 8x the window with the RoPE base raised.
  std::int32_t stage1_seq_len = 4096;
  std::int64_t stage1_steps = 200;
  std::int64_t stage1_batch_windows = 1;
  double stage1_lr = 5e-4;
  double stage1_rope_theta = 1e6;
  std::int64_t save_every = 100;  // checkpoint interval of every run (resume granularity)
  std::vector<std::string> variants = {"full",      "intra_cont",  "intra_reset", "anchor",
                                       "full_fp32", "anchor_fp32", "anchor_exact"};
  std::vector<std::uint64_t> seeds = {1, 2, 3};  // stage-1 seeds of the bf16 variants
  // Evaluation of every final model (eval library), all in the same precision.
  std::vector<std::string> eval_tasks = {"niah_single_2", "niah_multikey_1", "niah_multikey_2"};
  std::vector<std::int64_t> eval_lengths = {512, 1024, 2048, 4096, 8192};
  std::int64_t eval_samples = 16;     // prompts per (task, length), at spread depths
  std::int64_t eval_ppl_samples = 2;  // held-out windows for ppl by position
  std::string eval_template_set = "kv";
  model::Precision eval_precision = model::Precision::bf16;
  // How bf16 runs, in training (stage 0, the bf16 variants) and in evaluation:
  // model::RunOptions::bf16_compute. Emulated, the reference, is what every study in
  // docs/STUDY.md ran; native (bf16 operands with float32 sums, as GPUs train) is faster on CPUs
  // with AVX512_BF16.
  model::Bf16Compute bf16_compute = model::Bf16Compute::emulated;
  std::uint64_t eval_seed = 0;
  // The verdict rule's minimum effect (score points, 0-100): a difference must exceed both the
  // seed spread and this (verdict.h).
  double min_effect = 1.0;

  nlohmann::json to_json() const;
};

// The profiles.
StudyConfig default_config();
StudyConfig quick_config();
// `base` with steps, documents and samples multiplied by `factor` (> 0; each at least 1).
StudyConfig scaled(StudyConfig base, double factor);

// Throws anchorctx::Error naming the setting: unknown variant, task or preset, lengths not
// increasing, seq lens not positive, stage-1 window not longer than stage 0's, no seed.
void validate(const StudyConfig& config);

// The length at which the study checks stage 0's own retrieval (the skill stage 1 extends):
// stage 0's window, or the shortest evaluated length where a prompt cannot fit that window.
std::int64_t stage0_check_length(const StudyConfig& config);

// The stage-1 runs in the order the study runs them: seed by seed (so an interrupted study has
// every variant of its first seeds), the controls with the first seed only.
struct RunId {
  std::string variant;
  std::uint64_t seed = 0;
  std::string name() const;  // "anchor-s2"
};
std::vector<RunId> stage1_runs(const StudyConfig& config);

}  // namespace anchorctx::study
