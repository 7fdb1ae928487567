// Checkpoints of a training run: `<run>/checkpoints/step-NNNNNN/`, each a HuggingFace model
// folder (config.json + model.safetensors, loadable by AutoModelForCausalLM.from_pretrained as
// is, tokenizer files copied in when known) plus what resuming needs:
//   optimizer.safetensors  exp_avg.<name> and exp_avg_sq.<name> per parameter (float32)
//   trainer_state.json     step, tokens seen, data cursor, RNG state, the run's options
// A checkpoint is written into a hidden temporary folder and renamed into place when complete
// (core::AtomicDir), so a process killed during a save leaves the previous checkpoints intact
// and no folder named step-* that is partial.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/model/config.h"
#include "anchorctx/model/parameters.h"

namespace anchorctx::train {

inline constexpr int kTrainerStateVersion = 1;

// The largest counter (step, optimizer steps, tokens seen, data cursor) a trainer_state.json
// may hold: 2^53, the integers a double holds exactly (metrics.jsonl records counts as
// doubles), far beyond any run. Refused above it at save and load, so no counter a resumed run
// increments can overflow (INT64_MAX in a hand-edited file did: undefined behaviour).
inline constexpr std::int64_t kMaxTrainerCount = std::int64_t{1} << 53;

// The counters a resumed run needs to continue bit-identically.
struct TrainerState {
  std::int64_t step = 0;          // optimizer steps done
  std::int64_t tokens_seen = 0;   // input tokens consumed (all ranks)
  std::uint64_t data_cursor = 0;  // the next logical window to read, counting across epochs
  std::uint64_t rng_state = 0;    // the trainer's generator state (window order per epoch)
  double last_loss = 0.0;
  // The run's options as given (saved for the record; resume checks the ones that must match).
  nlohmann::json options = nlohmann::json::object();
  // The identity of the run's dataset (train/resume_rules.h), compared on resume; empty in
  // checkpoints of older builds.
  nlohmann::json dataset = nlohmann::json::object();
};

struct CheckpointData {
  const model::LlamaConfig* config = nullptr;
  const model::ParameterLayout* layout = nullptr;
  std::span<const float> params;
  std::int64_t optimizer_steps = 0;
  std::span<const float> exp_avg;  // empty: no optimizer state written (export only)
  std::span<const float> exp_avg_sq;
  TrainerState state;
  // Files copied next to the weights (tokenizer.model, tokenizer.json, tokenizer.bin, ...).
  std::vector<std::filesystem::path> extra_files;
};

// Throws anchorctx::Error naming `file` unless it can be copied into a checkpoint: a regular
// file, not named like one of the checkpoint's own files. The trainer checks every --copy-file
// before its first step (it was found out at the first save, after the steps).
void check_extra_file(const std::filesystem::path& file);

// `<run_dir>/checkpoints/step-%06d` for `step`.
std::filesystem::path checkpoint_path(const std::filesystem::path& run_dir, std::int64_t step);

// Writes the checkpoint of data.state.step atomically (see above); replaces an existing folder
// of the same step. Weights are float32 on disk (torch_dtype float32: the master weights).
// Returns the final folder. Throws anchorctx::Error (nothing left under the final name).
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir,
                                      const CheckpointData& data);

// Complete checkpoints of a run (folders named step-NNNNNN holding trainer_state.json),
// ascending by step; hidden temporary folders are ignored.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

// The checkpoint `--resume` continues: latest_checkpoint, except that the newest step-*
// entry must be a complete checkpoint. Checkpoints are renamed into place only when complete,
// so a step-* folder without a regular trainer_state.json (missing, a folder, a FIFO, a
// dangling link) is damage, not an interrupted save: throws anchorctx::Error naming it and the
// way on, rather than silently resuming an older checkpoint.
std::optional<std::filesystem::path> resume_checkpoint(const std::filesystem::path& run_dir);

// Removes all but the newest `keep_last` checkpoints (keep_last <= 0 keeps all).
void prune_checkpoints(const std::filesystem::path& run_dir, int keep_last);

struct LoadedCheckpoint {
  model::LlamaConfig config;
  TrainerState state;
  std::int64_t optimizer_steps = 0;
  std::vector<float> params, exp_avg, exp_avg_sq;  // layout.total() elements each
};

// Reads a checkpoint folder written by save_checkpoint into `layout`'s buffers (the layout of
// the checkpoint's own config.json). Throws anchorctx::Error naming the file (and the key) on
// anything missing, misshapen, of the wrong JSON type, out of range (counters above
// kMaxTrainerCount, more optimizer steps than steps, a step other than a step-NNNNNN folder's
// name) or of another trainer_state version.
LoadedCheckpoint load_checkpoint(const std::filesystem::path& dir);

}  // namespace anchorctx::train
