#include "anchorctx/train/resume_rules.h"

#include <string_view>

#include "anchorctx/core/error.h"

namespace anchorctx::train {

namespace {

using nlohmann::json;

// Each option of TrainOptions::to_json() by its one name, and whether a resume may change it.
// The data and the model are compared by content (dataset_identity, the config), so their
// paths and the way the config was given may change. A key missing here (a newer option) may
// change, and the change is reported.
struct OptionRule {
  std::string_view key;
  bool may_change;
};
constexpr OptionRule kOptionRules[] = {
    // Where the run's inputs come from: compared by content below.
    {"data", true},
    {"out", true},
    {"preset", true},
    {"model-config", true},
    {"init-from", true},
    // What the run computes: numerics, attention, positions, the loss.
    {"precision", false},
    {"rope-mode", false},
    {"mask", false},
    {"positions", false},
    {"mask-doc-boundaries", false},
    // Which windows each step reads, and the optimizer whose moments the checkpoint holds.
    {"batch-windows", false},
    {"grad-accum", false},
    // Sequence parallel: the forward's bits stay, but gradients are summed over shards in
    // another order, so a resume at another --sp would not continue the run bit for bit.
    {"sp", false},
    {"seed", false},
    {"beta1", false},
    {"beta2", false},
    {"eps", false},
    {"weight-decay", false},
    // The processes: another count changes the global batch (data-parallel degree x grad-accum
    // x batch-windows) and so the windows of every step.
    {"world-size", false},
    // How long and how fast it learns from here on.
    {"steps", true},
    {"schedule", true},
    {"lr", true},
    {"min-lr", true},
    {"warmup-steps", true},
    {"warmup-start", true},
    {"clip-grad-norm", true},
    {"skip-nonfinite", true},
    {"max-consecutive-skips", true},
    // Bookkeeping and resources.
    {"log-every", true},
    {"save-every", true},
    {"keep-last", true},
    {"threads", true},
    {"loss-chunk", true},
    {"checkpointing", true},
    // The same bits either way, and the checkpoint holds the whole optimizer state.
    {"shard-optimizer", true},
    // The same bf16 precision by another GEMM (docs/PRECISION.md), whose sums run in another
    // order: taken, so that a run can go on on a CPU without AVX512_BF16, at the cost of a
    // continuation that is not bit-identical (docs/RELIABILITY.md says so).
    {"bf16-compute", true},
    {"copy-file", true},
    {"no-tensorboard", true},
    {"no-copy-tokenizer", true},
    {"no-verify-data", true},
};

bool may_change(std::string_view key) {
  for (const OptionRule& rule : kOptionRules)
    if (rule.key == key) return rule.may_change;
  return true;
}

std::string value_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// What a side that lacks a key shows for it.
constexpr std::string_view kAbsent = "(not recorded)";

// Differences between two JSON objects, key by key (nested objects flattened with '.'). A key
// one side lacks is a difference too: skipping it let a trainer_state.json without "seed" (or
// without the dataset's file hashes) resume with any value.
void diff_objects(const std::string& prefix, const json& before, const json& after,
                  std::vector<Difference>& out) {
  for (auto it = before.begin(); it != before.end(); ++it) {
    const auto other = after.find(it.key());
    if (other == after.end()) {
      out.push_back({prefix + it.key(), value_text(*it), std::string(kAbsent)});
    } else if (it->is_object() && other->is_object()) {
      diff_objects(prefix + it.key() + ".", *it, *other, out);
    } else if (*it != *other) {
      out.push_back({prefix + it.key(), value_text(*it), value_text(*other)});
    }
  }
  for (auto it = after.begin(); it != after.end(); ++it)
    if (!before.contains(it.key()))
      out.push_back({prefix + it.key(), std::string(kAbsent), value_text(*it)});
}

// The recorded options with the fixed options recorded only since a later build filled in with
// the value every earlier run had, so that such a checkpoint resumes as it did rather than being
// refused for a key it could not hold. A fixed option added to TrainOptions::to_json() adds a
// line here.
json with_options_added_later(json recorded) {
  const std::pair<const char*, json> added_later[] = {{"sp", 1}, {"world-size", 1}};
  for (const auto& [key, value] : added_later)
    if (!recorded.contains(key)) recorded[key] = value;
  return recorded;
}

}  // namespace

std::string Difference::text() const {
  return what + ": " + before + " -> " + after;
}

json dataset_identity(const data::Dataset& dataset) {
  const json& meta = dataset.meta();
  json id = json::object();
  for (const char* key : {"seq_len", "vocab_size", "anchor_mode", "anchor_id"})
    if (meta.contains(key)) id[key] = meta[key];
  if (meta.contains("tokenizer") && meta["tokenizer"].is_object() &&
      meta["tokenizer"].contains("content_hash"))
    id["tokenizer"] = meta["tokenizer"]["content_hash"];
  if (meta.contains("files") && meta["files"].is_object()) {
    for (auto it = meta["files"].begin(); it != meta["files"].end(); ++it)
      if (it->is_object() && it->contains("xxh3_128")) id["files"][it.key()] = (*it)["xxh3_128"];
  }
  return id;
}

ResumeDifferences compare_for_resume(const json& recorded_options, const json& options,
                                     const json& recorded_dataset, const json& dataset,
                                     const model::LlamaConfig& recorded_config,
                                     const model::LlamaConfig& config) {
  // load_checkpoint refuses other types; a non-object here must not skip the comparison.
  require(recorded_options.is_object() && options.is_object() && recorded_dataset.is_object() &&
              dataset.is_object(),
          "compare_for_resume: options and dataset identities must be JSON objects");
  ResumeDifferences d;
  std::vector<Difference> changed;
  diff_objects("", with_options_added_later(recorded_options), with_options_added_later(options),
               changed);
  for (Difference& c : changed)
    (may_change(c.what) ? d.allowed : d.refused).push_back(std::move(c));
  changed.clear();
  diff_objects("dataset ", recorded_dataset, dataset, changed);
  for (Difference& c : changed)
    d.refused.push_back(std::move(c));
  if (!(recorded_config == config)) {
    changed.clear();
    diff_objects("model ", json::parse(model::config_to_json(recorded_config)),
                 json::parse(model::config_to_json(config)), changed);
    if (changed.empty()) changed.push_back({"model config", "recorded", "different"});
    for (Difference& c : changed)
      d.refused.push_back(std::move(c));
  }
  return d;
}

}  // namespace anchorctx::train
