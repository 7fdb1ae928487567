// The study's settings: variants, profiles, validation, the run list.
#include "anchorctx/study/config.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "anchorctx/eval/evaluation.h"
#include "anchorctx/eval/templates.h"
#include "anchorctx/model/config.h"

namespace anchorctx::study {

using attention::MaskKind;
using model::Precision;
using rope::PositionPolicy;
using rope::RopeMode;

const std::vector<Variant>& all_variants() {
  static const std::vector<Variant> variants = {
      {"full", "Full attention", MaskKind::causal, PositionPolicy::global, Precision::bf16,
       RopeMode::hf_bf16, false},
      {"intra_cont", "Intra-doc (continuous ids)", MaskKind::intra_doc, PositionPolicy::global,
       Precision::bf16, RopeMode::hf_bf16, false},
      {"intra_reset", "Intra-doc (reset ids)", MaskKind::intra_doc, PositionPolicy::reset,
       Precision::bf16, RopeMode::hf_bf16, false},
      {"anchor", "AnchorAttention", MaskKind::anchor, PositionPolicy::anchor, Precision::bf16,
       RopeMode::hf_bf16, false},
      {"full_fp32", "Full attention, fp32", MaskKind::causal, PositionPolicy::global,
       Precision::fp32, RopeMode::fp32, true},
      {"anchor_fp32", "AnchorAttention, fp32", MaskKind::anchor, PositionPolicy::anchor,
       Precision::fp32, RopeMode::fp32, true},
      {"anchor_exact", "AnchorAttention, bf16, exact RoPE", MaskKind::anchor,
       PositionPolicy::anchor, Precision::bf16, RopeMode::exact, true},
  };
  return variants;
}

const Variant* find_variant(const std::string& name) {
  for (const Variant& v : all_variants())
    if (v.name == name) return &v;
  return nullptr;
}

nlohmann::json StudyConfig::to_json() const {
  return {{"preset", preset},
          {"corpus_seed", corpus_seed},
          {"retrieval_fraction", retrieval_fraction},
          {"stage0_documents", stage0_documents},
          {"stage0_median_chars", stage0_median_chars},
          {"stage1_documents", stage1_documents},
          {"stage1_median_chars", stage1_median_chars},
          {"stage1_max_chars", stage1_max_chars},
          {"stage0_seq_len", stage0_seq_len},
          {"stage0_steps", stage0_steps},
          {"stage0_batch_windows", stage0_batch_windows},
          {"stage0_lr", stage0_lr},
          {"stage0_rope_theta", stage0_rope_theta},
          {"stage1_seq_len", stage1_seq_len},
          {"stage1_steps", stage1_steps},
          {"stage1_batch_windows", stage1_batch_windows},
          {"stage1_lr", stage1_lr},
          {"stage1_rope_theta", stage1_rope_theta},
          {"save_every", save_every},
          {"variants", variants},
          {"seeds", seeds},
          {"eval_tasks", eval_tasks},
          {"eval_lengths", eval_lengths},
          {"eval_samples", eval_samples},
          {"eval_ppl_samples", eval_ppl_samples},
          {"eval_template_set", eval_template_set},
          {"eval_precision", std::string(model::to_string(eval_precision))},
          {"bf16_compute", std::string(model::to_string(bf16_compute))},
          {"eval_seed", eval_seed},
          {"min_effect", min_effect}};
}

StudyConfig default_config() {
  return {};
}

StudyConfig quick_config() {
  StudyConfig c;
  c.preset = "tiny";
  c.stage0_documents = 200;
  c.stage1_documents = 40;
  c.stage1_median_chars = 1500;
  c.stage1_max_chars = 6000;
  c.stage0_seq_len = 32;
  c.stage0_steps = 4;
  c.stage0_batch_windows = 2;
  c.stage1_seq_len = 256;
  c.stage1_steps = 3;
  c.save_every = 2;
  c.seeds = {1};
  c.eval_tasks = {"niah_single_2", "niah_multikey_2"};
  c.eval_lengths = {128, 256, 512};
  c.eval_samples = 1;
  c.eval_ppl_samples = 1;
  return c;
}

StudyConfig scaled(StudyConfig c, double factor) {
  require(std::isfinite(factor) && factor > 0, "study: --scale must be a positive number, got {}",
          factor);
  const auto times = [factor](std::int64_t v) {
    return std::max<std::int64_t>(1, std::llround(static_cast<double>(v) * factor));
  };
  c.stage0_documents = times(c.stage0_documents);
  c.stage1_documents = times(c.stage1_documents);
  c.stage0_steps = times(c.stage0_steps);
  c.stage1_steps = times(c.stage1_steps);
  c.save_every = times(c.save_every);
  c.eval_samples = times(c.eval_samples);
  c.eval_ppl_samples = times(c.eval_ppl_samples);
  return c;
}

void validate(const StudyConfig& c) {
  model::preset(c.preset);  // throws, listing the presets
  std::string why;
  require(c.bf16_compute == model::Bf16Compute::emulated || model::native_bf16_available(&why),
          "study: bf16-compute native is unavailable here: {}", why);
  require(c.retrieval_fraction >= 0 && c.retrieval_fraction <= 1,
          "study: retrieval-fraction must lie in [0, 1], got {}", c.retrieval_fraction);
  require(c.stage0_documents >= 1 && c.stage1_documents >= 1,
          "study: stage0-documents and stage1-documents must be at least 1");
  require(c.stage0_median_chars >= 1 && c.stage1_median_chars >= 1 && c.stage1_max_chars > 64,
          "study: median-chars must be at least 1 and stage1-max-chars above 64");
  require(c.stage0_seq_len >= 16, "study: stage0-seq-len must be at least 16, got {}",
          c.stage0_seq_len);
  require(c.stage1_seq_len > c.stage0_seq_len,
          "study: stage1-seq-len ({}) must be longer than stage0-seq-len ({}): stage 1 extends "
          "the context",
          c.stage1_seq_len, c.stage0_seq_len);
  require(c.stage0_steps >= 1 && c.stage1_steps >= 1, "study: steps must be at least 1");
  require(c.stage0_batch_windows >= 1 && c.stage1_batch_windows >= 1,
          "study: batch-windows must be at least 1");
  require(c.stage0_lr > 0 && c.stage1_lr > 0, "study: learning rates must be positive");
  require(c.stage0_rope_theta > 0 && c.stage1_rope_theta > 0,
          "study: rope thetas must be positive");
  require(c.save_every >= 0, "study: save-every must be 0 (end only) or positive");
  require(!c.variants.empty(), "study: variants: empty list");
  for (const std::string& v : c.variants) {
    std::string known;
    for (const Variant& k : all_variants())
      known += (known.empty() ? "" : ", ") + k.name;
    require(find_variant(v) != nullptr, "study: unknown variant '{}' (known: {})", v, known);
    require(std::count(c.variants.begin(), c.variants.end(), v) == 1,
            "study: variant '{}' listed twice", v);
  }
  require(!c.seeds.empty(), "study: seeds: empty list");
  for (std::size_t i = 0; i < c.seeds.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      require(c.seeds[i] != c.seeds[j], "study: seed {} listed twice", c.seeds[i]);
  const std::vector<std::string> known = eval::task_names();
  require(!c.eval_tasks.empty(), "study: eval-tasks: empty list");
  for (const std::string& t : c.eval_tasks)
    require(std::find(known.begin(), known.end(), t) != known.end() && t != "ppl",
            "study: eval-tasks: '{}' is not a retrieval task of anchorctx eval (ppl always runs)",
            t);
  require(!c.eval_lengths.empty(), "study: eval-lengths: empty list");
  for (std::size_t i = 0; i < c.eval_lengths.size(); ++i)
    require(c.eval_lengths[i] >= 16 && (i == 0 || c.eval_lengths[i] > c.eval_lengths[i - 1]),
            "study: eval-lengths must be increasing and at least 16 (got {} at position {})",
            c.eval_lengths[i], i + 1);
  // The verdicts' primary score is the mean over the lengths up to the window: without one, no
  // score claim could be judged after all the training.
  require(c.eval_lengths.front() <= c.stage1_seq_len,
          "study: no eval-lengths within the stage-1 window ({} tokens; the shortest given is "
          "{}): the verdicts judge the mean over lengths up to the window, so give at least one "
          "length <= {}",
          c.stage1_seq_len, c.eval_lengths.front(), c.stage1_seq_len);
  require(c.eval_samples >= 1 && c.eval_ppl_samples >= 1,
          "study: eval-samples and eval-ppl-samples must be at least 1");
  eval::default_templates().at(c.eval_template_set);  // throws naming the set
  require(std::isfinite(c.min_effect) && c.min_effect >= 0,
          "study: min-effect must be a non-negative number");
}

std::string RunId::name() const {
  return fmt::format("{}-s{}", variant, seed);
}

std::int64_t stage0_check_length(const StudyConfig& config) {
  return std::max<std::int64_t>(config.stage0_seq_len, config.eval_lengths.front());
}

std::vector<RunId> stage1_runs(const StudyConfig& c) {
  std::vector<RunId> runs;
  for (std::size_t s = 0; s < c.seeds.size(); ++s)
    for (const std::string& v : c.variants)
      if (s == 0 || !find_variant(v)->control) runs.push_back({v, c.seeds[s]});
  return runs;
}

}  // namespace anchorctx::study
