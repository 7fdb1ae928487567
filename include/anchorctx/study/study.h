// `anchorctx study`: the paper's context-extension experiment at small scale, as one resumable
// call (docs/STUDY.md).
//
// The study folder:
//   study.json                 the settings (a rerun with other settings is refused by name)
//   data/                      the corpora (JSONL) and their packed datasets, stage 0 and 1
//   stage0/run/                stage 0's training run; stage0/done.json when complete
//   stage0/long/               stage 0's final weights with the stage-1 config (RoPE base raised)
//   stage1/<variant>-s<seed>/  run/ (training), train-done.json, eval/ (anchorctx eval's report
//                              folder), eval-done.json; failed.json instead when its training
//                              diverged (a result: the study goes on, a rerun skips it)
//   report.md, report.json, plots/   rewritten after every finished sub-run
// Every sub-run is skipped when its done marker exists and resumed from its newest checkpoint
// when it was interrupted (train's --resume), so an interrupted study continues where it
// stopped.
#pragma once

#include <filesystem>

#include "anchorctx/study/config.h"

namespace anchorctx::study {

struct StudyOptions {
  bool quiet = false;        // no progress on stderr
  std::string command_line;  // recorded in the report (how to regenerate it)
};

// Runs (or continues) the study in `out`. Throws anchorctx::Error on bad settings, settings
// that differ from those `out` was started with, or a failed sub-run.
void run_study(const StudyConfig& config, const std::filesystem::path& out,
               const StudyOptions& options);

// Rewrites report.md, report.json and plots/ from the done markers in `out` (what run_study
// does after each sub-run); pending runs are listed as pending. Throws anchorctx::Error, writing
// nothing, when `out` is no study folder (no study.json) or was run with other settings (named).
void write_study_report(const StudyConfig& config, const std::filesystem::path& out,
                        const StudyOptions& options);

}  // namespace anchorctx::study
