// report.md of a run folder: the run's metrics as plots (loss, learning rate, gradient norm,
// tokens/s), each an SVG and a PNG drawn once with cairo (core/line_chart.h), and a summary.
//
// Everything is read from the run folder, so a resumed run's report covers the whole run:
// metrics.jsonl (which a resume truncates to its checkpoint and continues) and the newest
// checkpoint's trainer_state.json and config.json.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "anchorctx/core/line_chart.h"

namespace anchorctx::train {

// One scalar of metrics.jsonl: the steps that recorded it and its values (a null, written for a
// non-finite value, is NaN here).
struct MetricSeries {
  std::vector<double> steps, values;
};

// The scalars of `path` (metrics.jsonl) by name ("loss", "lr", ...). Throws anchorctx::Error
// naming the file and line of a line that is not a JSON object with an integer "step".
std::map<std::string, MetricSeries> read_metrics_jsonl(const std::filesystem::path& path);

// A plot of the report: file stem and chart.
struct ReportPlot {
  std::string stem;  // plots/<stem>.svg and plots/<stem>.png
  core::LineChart chart;
};

// The plots of the report, for the metrics present: loss, lr, grad_norm (log scale),
// tokens_per_s. Each chart's one series is the metric as read (steps as x).
std::vector<ReportPlot> report_plots(const std::map<std::string, MetricSeries>& metrics);

// Writes `<run_dir>/plots/<stem>.{svg,png}` and `<run_dir>/report.md` as one set (every file
// staged before any replaces its old version, report.md last) and returns the report's path. Throws
// anchorctx::Error (metrics.jsonl missing or damaged, a file that cannot be written).
std::filesystem::path write_run_report(const std::filesystem::path& run_dir);

// write_run_report for the end of a run: an error (a damaged metrics.jsonl, a full disk) is a
// warning on stderr (with --quiet too: output is lost) and false, never a failure of the
// finished training; an older report.md is removed so that it never passes as this run's.
bool write_run_report_or_warn(const std::filesystem::path& run_dir);

}  // namespace anchorctx::train
