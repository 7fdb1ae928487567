// What `--resume` may change (docs/RELIABILITY.md, "Resume rules"). A resumed run continues the
// checkpoint's run, so the options that make up its meaning (the data, the model, the loss, the
// numerics, the batch and the optimizer's definition) must equal the recorded ones; the ones a
// user legitimately changes mid-run (more steps, the learning-rate schedule, save and log
// cadence, threads, memory knobs) are taken, each change reported.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/data/dataset.h"
#include "anchorctx/model/config.h"

namespace anchorctx::train {

// One difference between the recorded run and the resumed one: "mask: anchor -> causal".
struct Difference {
  std::string what, before, after;
  std::string text() const;
};

struct ResumeDifferences {
  std::vector<Difference> refused;  // would change the run's meaning
  std::vector<Difference> allowed;  // taken, and reported
};

// The identity of a dataset's content, as meta.json gives it: seq_len, vocabulary, anchor mode
// and id, the tokenizer's content hash, and the size and XXH3-128 of every file (tokens,
// document starts, loss spans, order). Two folders with equal identities hold the same windows
// in the same order. O(1): nothing is hashed here.
nlohmann::json dataset_identity(const data::Dataset& dataset);

// Compares a checkpoint's recorded options, dataset identity and model config with this
// run's. Options are TrainOptions::to_json() objects, identities dataset_identity() objects
// (anything else throws anchorctx::Error). A key one side lacks is a difference shown as
// "(not recorded)": refused for a fixed option and for the dataset, so a trainer_state.json
// stripped of a key cannot bypass its check; taken and reported for the others.
ResumeDifferences compare_for_resume(const nlohmann::json& recorded_options,
                                     const nlohmann::json& options,
                                     const nlohmann::json& recorded_dataset,
                                     const nlohmann::json& dataset,
                                     const model::LlamaConfig& recorded_config,
                                     const model::LlamaConfig& config);

}  // namespace anchorctx::train
