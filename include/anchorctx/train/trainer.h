// The training loop: micro-batches from a packed dataset through LlamaTrainModel, gradient
// accumulation, one gradient all-reduce through the communicator, clipping, AdamW with a
// schedule, metrics, checkpoints and resume.
//
// Determinism: a run is a pure function of its options and data. Resuming from a checkpoint
// reproduces the straight run's losses and weights bit for bit (same thread counts), since
// every kernel sums in a fixed order and the data cursor and RNG state are saved.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/train/batch.h"
#include "anchorctx/train/optimizer.h"
#include "anchorctx/train/schedule.h"

namespace anchorctx::train {

struct TrainOptions {
  std::filesystem::path data;  // packed dataset folder (anchorctx pack)
  std::filesystem::path out;   // run folder: checkpoints/, metrics.jsonl, events, report.md
  // The model: a preset name, a config.json, or a model folder to start from (its weights).
  std::string preset;
  std::filesystem::path config_json;
  std::filesystem::path init_from;
  model::RunOptions run;
  BatchOptions batch;
  std::int64_t windows_per_micro_batch = 1;
  std::int64_t grad_accum = 1;
  // Ulysses sequence-parallel degree (--sp): this many consecutive ranks share each window,
  // each computing a shard of its tokens (model/sequence_parallel.h); the world size must be
  // a multiple. Above 1 it turns on thread-invariant GEMMs (process-wide), which make a shard's
  // forward the bits of the whole window's.
  int sp = 1;
  std::int64_t steps = 100;
  Schedule schedule;
  AdamWOptions adamw;
  double clip_grad_norm = 1.0;  // 0: off (negative and NaN refused by validate)
  bool skip_nonfinite = false;  // skip a step with a non-finite loss/gradient instead of stopping
  // With skip_nonfinite: this many skipped steps in a row mean the run has diverged, and it
  // stops with an error (as does a run whose every step was skipped).
  std::int64_t max_consecutive_skips = 10;
  std::uint64_t seed = 0;  // parameter init and the window order of later epochs
  std::int64_t log_every = 1;
  std::int64_t save_every = 0;  // 0: at the end only
  int keep_last = 3;
  bool resume = false;  // continue from the newest checkpoint in `out`
  bool tensorboard = true;
  bool quiet = false;
  // How the user goes on after an interruption, said with the last checkpoint (the study, which
  // trains through this, continues by a rerun of its command).
  std::string continue_hint = "--resume continues from it";
  // What the user can do about a non-finite loss or gradient, said with the error in parentheses
  // ("" for none: the study has no such option).
  std::string nonfinite_hint = "--skip-nonfinite skips such steps instead";
  // Say "--resume: no checkpoint in DIR; starting a new run" (train says it even with --quiet;
  // the study, whose every run starts so, does not).
  bool announce_new_run = true;
  // Hash every file of the dataset against meta.json before the first step (Dataset::verify):
  // the open-time checks cannot see a token changed to another valid id. Its cost next to a
  // step is in docs/PERFORMANCE.md.
  bool verify_data = true;
  // Extra files copied into every checkpoint (after the tokenizer's: a file of the same name
  // replaces it).
  std::vector<std::filesystem::path> extra_files;
  // Copy the dataset's tokenizer into every checkpoint (train/run_tokenizer.h).
  bool copy_tokenizer = true;
  // Processes the run expects (0: as many as were launched). The trainer sets it to the launched
  // number, which a run records: a resume at another world size is refused (it would change the
  // global batch), and a config file that names one refuses another launch before any work.
  int world_size = 0;
  // ZeRO-1: each data-parallel rank holds the AdamW moments of one slice of the parameters
  // (train/data_parallel_optimizer.h); the same bits as without it.
  bool shard_optimizer = false;

  // The options a run records (trainer_state.json), keyed by `anchorctx train`'s long option
  // names, which are also its --config TOML keys: written back as a TOML file they reproduce
  // the run.
  nlohmann::json to_json() const;
};

// Throws anchorctx::Error naming the option.
void validate(const TrainOptions& options);

struct StepRecord {
  std::int64_t step = 0;  // 1-based: the optimizer step just done
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double step_ms = 0.0;
  std::int64_t tokens = 0;  // input tokens of the step (all ranks)
  bool skipped = false;
};

struct TrainResult {
  std::vector<StepRecord> steps;  // the steps run by this call (after a resume: from there)
  std::int64_t final_step = 0;
  double tokens_per_s = 0.0;              // input tokens per second over the steps run
  std::filesystem::path last_checkpoint;  // after nothing to do: the resumed checkpoint
  model::LlamaConfig config;
  // --resume found a checkpoint at or past `steps`: no step ran, nothing was written.
  bool nothing_to_do = false;
};

// The run stopped because its loss or gradient went non-finite (without skip_nonfinite, or too
// many skipped steps in a row): an outcome of the run's settings, not of its inputs, which a
// caller may record as a result (the study does).
class TrainingDiverged : public Error {
 public:
  using Error::Error;
};

class Trainer {
 public:
  // Opens the data, builds or loads the model (and the checkpoint when resuming). Throws
  // anchorctx::Error.
  Trainer(TrainOptions options, dist::Communicator& comm);
  ~Trainer();

  // Runs to options.steps. `on_step` (optional) is called after each step (and its checkpoint,
  // when one is due); an exception it throws ends the run there.
  TrainResult run(const std::function<void(const StepRecord&)>& on_step = {});

  model::LlamaTrainModel& model() { return *model_; }
  std::int64_t step() const { return step_; }

 private:
  struct Impl;
  TrainOptions options_;
  dist::Communicator& comm_;
  std::unique_ptr<model::LlamaTrainModel> model_;
  std::unique_ptr<Impl> impl_;
  std::int64_t step_ = 0;
};

// The model config a TrainOptions asks for (preset, config.json, or init_from's config.json).
model::LlamaConfig resolve_model_config(const TrainOptions& options);

}  // namespace anchorctx::train
