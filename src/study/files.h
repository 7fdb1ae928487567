// The study folder's small JSON files: done markers and the summaries they hold, which the
// report is built from (so a report can be rebuilt from the folder alone).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/analysis/rope_drift.h"
#include "anchorctx/eval/evaluation.h"

namespace anchorctx::study {

// Throws anchorctx::Error naming the file when it cannot be read or parsed.
nlohmann::json read_json(const std::filesystem::path& path);
// Written under a temporary name and renamed.
void write_json(const std::filesystem::path& path, const nlohmann::json& value);

// A folder of the study as its markers record it: relative to the study folder, so that a
// study continues wherever it is run from or moved to. (Markers recorded --out as typed: a rerun
// from another directory read another study's checkpoint of the same relative name.)
std::string recorded_path(const std::filesystem::path& study, const std::filesystem::path& inside);

// The folder `key` of `marker` records, inside `study`. A path as older markers wrote it
// (relative to where the study ran) is taken only where it names a folder inside this study.
// Throws anchorctx::Error naming the marker otherwise.
std::filesystem::path recorded_folder(const std::filesystem::path& study,
                                      const std::filesystem::path& marker, const char* key);

// The settings a study folder was started with (its study.json's "config"), settings added to
// the study since then filled in with the value such folders ran (bf16_compute: emulated), so
// an older folder still compares equal to the settings it ran.
nlohmann::json recorded_settings(const std::filesystem::path& study_json);

// "" when `now` (StudyConfig::to_json) equals `before` (recorded_settings), else each setting
// that differs by its option name with both values: "stage1-lr (0.0005 before, 0.001 now); ...".
std::string settings_difference(const nlohmann::json& before, const nlohmann::json& now);

// The done markers, read and checked for the shape the report reads (each key present with its
// type), so that a marker of another shape is named with what is wrong ("delete it to redo that
// part"), never surfaced as the JSON library's text. Values the report reads as numbers may be
// null (nlohmann writes NaN so). `tasks` and `lengths`: the scores an eval-done.json must hold.
nlohmann::json read_train_done(const std::filesystem::path& path);
nlohmann::json read_eval_done(const std::filesystem::path& path,
                              const std::vector<std::string>& tasks,
                              const std::vector<std::int64_t>& lengths);
nlohmann::json read_drift_done(const std::filesystem::path& path);
// failed.json: {"stage": "training", "reason": the trainer's message} of a stage-1 run that
// diverged; the study goes on with the others and reports it as failed.
nlohmann::json read_failed_marker(const std::filesystem::path& path);

// train-done.json: the final checkpoint, the loss curve and the median step time (seconds,
// steps after the first: the first pays for allocation) from the run's metrics.jsonl.
nlohmann::json train_summary(const std::filesystem::path& run_dir,
                             const std::filesystem::path& checkpoint);

// eval-done.json: {"scores": {task: {length: 0-100}}, "ppl": [{"length", "loss", "buckets":
// [[begin, end, mean loss], ...]}], "seconds"}.
nlohmann::json eval_summary(const eval::EvalReport& report);

// drift-done.json: {"seq_len", "policy": "global", "D": {mode: mean D over delta1},
// "D_excl_first": {mode: ...}, "first_token_share": {mode: ...}, "seconds"}.
nlohmann::json drift_summary(const analysis::RopeDriftReport& report);

}  // namespace anchorctx::study
