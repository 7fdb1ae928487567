// `anchorctx eval --compare RUN_A RUN_B ...`: several evaluation reports (report.json) side by
// side, each against the first.
//
// Per (task, length) cell: each run's score (mean string_match_all x 100) and, for every run after
// the first, the difference to the first and its standard error across samples:
//   - paired, when both runs used the same seed and the same number of samples (sample i is then
//     the same prompt in both at the same depth, given the same tokenizer and templates): the
//     standard error of the per-sample differences, sd(d) / sqrt(n);
//   - unpaired otherwise (Welch): sqrt(var_a / n_a + var_b / n_b).
// A cell with one sample has no standard error (shown as such). ppl rows compare the mean loss per
// length the same way over the per-window losses (paired when the windows are the same text: the
// same source, tokens per window (`ppl_window_tokens`: max(lengths) + 1, so runs with other length
// lists cut other windows) and count; a report without ppl_window_tokens is never paired).
// Cells missing from some runs are shown empty; a length's average row is over the tasks every
// run has at that length. The plot: accuracy against length, one line per run (that average).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace anchorctx::eval {

struct RunScore {
  bool present = false;
  double mean = 0.0;            // 0-100 for tasks, mean loss for ppl
  std::int64_t samples = 0;     // samples (tasks) or windows (ppl)
  double diff = 0.0, se = 0.0;  // against the first run (NaN se: one sample); run 0: 0, NaN
  bool paired = false;
};

struct CompareRow {
  std::string task;  // "ppl" for the loss rows
  std::int64_t length = 0;
  std::vector<RunScore> runs;  // one per report, in the order given
};

struct Comparison {
  std::vector<std::string> names;  // each run's folder (or file) as given
  std::vector<std::int64_t> lengths;
  std::vector<CompareRow> rows;              // tasks in the first report's order, then lengths
  std::vector<std::vector<double>> average;  // [run][length]: mean over tasks shared by all runs
  std::vector<std::string> notes;  // what differs between the runs (seeds, templates, cells)
};

// Reads RUN/report.json (or RUN itself when it is a file). Throws anchorctx::Error naming the
// path when it is missing, not JSON, or not an `anchorctx eval` report.
nlohmann::json load_report(const std::filesystem::path& run);

// Throws anchorctx::Error when fewer than two reports are given or they share no (task, length)
// cell and no ppl length.
Comparison compare_reports(const std::vector<nlohmann::json>& reports,
                           const std::vector<std::string>& names);

nlohmann::json to_json(const Comparison& comparison);
// compare.json, compare.md and compare_accuracy_vs_length (.svg, .png; when there are task rows)
// into `dir` (created if missing), each file atomically.
void write_comparison(const Comparison& comparison, const std::filesystem::path& dir);

}  // namespace anchorctx::eval
