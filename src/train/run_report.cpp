// report.md of a run folder (run_report.h).
#include "anchorctx/train/run_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/train/checkpoint.h"

namespace anchorctx::train {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The plots, in report order: metric name, title, y label, y scale.
struct PlotSpec {
  const char* metric;
  const char* title;
  const char* y_label;
  core::AxisScale y_scale;
};
constexpr PlotSpec kPlots[] = {
    {"loss", "Training loss", "loss (nats per target token)", core::AxisScale::linear},
    {"lr", "Learning rate", "learning rate", core::AxisScale::linear},
    // Gradient norms span decades early in a run: log scale.
    {"grad_norm", "Gradient norm (before clipping)", "global L2 norm", core::AxisScale::log},
    {"tokens_per_s", "Throughput", "input tokens per second (since the process started)",
     core::AxisScale::linear},
};

// Best effort: the report leaves out what it cannot read. Through core::read_json_file, so a
// FIFO in a checkpoint is not waited on and deep nesting is not walked.
std::optional<json> read_json(const fs::path& path) {
  try {
    return core::read_json_file(path, "a checkpoint file");
  } catch (const Error&) {
    return std::nullopt;
  }
}

// first, last, min (finite values only) of a series; nullopt when it has none.
struct Summary {
  double first, last, min;
  double first_step, last_step, min_step;
};
std::optional<Summary> summarize(const MetricSeries& s) {
  std::optional<Summary> out;
  for (std::size_t i = 0; i < s.values.size(); ++i) {
    const double v = s.values[i];
    if (!std::isfinite(v)) continue;
    if (!out) out = Summary{v, v, v, s.steps[i], s.steps[i], s.steps[i]};
    out->last = v;
    out->last_step = s.steps[i];
    if (v < out->min) out->min = v, out->min_step = s.steps[i];
  }
  return out;
}

std::string describe_run(const fs::path& run_dir) {
  const std::optional<fs::path> latest = latest_checkpoint(run_dir);
  if (!latest) return "- no checkpoint yet\n";
  std::string md;
  if (const auto state = read_json(*latest / "trainer_state.json")) {
    md +=
        fmt::format("- step {} ({} tokens seen); newest checkpoint `{}`\n", state->value("step", 0),
                    state->value("tokens_seen", 0), fs::relative(*latest, run_dir).string());
    const json options = state->value("options", json::object());
    if (!options.empty()) {
      md += "- options:";
      // The recorded options under their long option names (TrainOptions::to_json()); the
      // snake_case names listed here before matched none of them but six.
      for (const char* key :
           {"data",       "preset",       "model-config", "init-from",    "precision",
            "rope-mode",  "bf16-compute", "mask",         "positions",    "batch-windows",
            "grad-accum", "sp",           "world-size",   "steps",        "schedule",
            "lr",         "min-lr",       "warmup-steps", "weight-decay", "clip-grad-norm",
            "seed"}) {
        const auto it = options.find(key);
        if (it == options.end() || (it->is_string() && it->get<std::string>().empty())) continue;
        md += fmt::format(" {}={}", key, it->is_string() ? it->get<std::string>() : it->dump());
      }
      md += "\n";
    }
  }
  if (const auto config = read_json(*latest / "config.json")) {
    md += fmt::format(
        "- model: {} layers, hidden {}, {} attention heads ({} key/value), vocabulary {}\n",
        config->value("num_hidden_layers", 0), config->value("hidden_size", 0),
        config->value("num_attention_heads", 0),
        config->value("num_key_value_heads", config->value("num_attention_heads", 0)),
        config->value("vocab_size", 0));
  }
  return md;
}

}  // namespace

std::map<std::string, MetricSeries> read_metrics_jsonl(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the metrics file", path.string());
  std::map<std::string, MetricSeries> out;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail("{}:{}: not JSON ({})", path.string(), number, e.what());
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      fail("{}:{}: expected an object with an integer \"step\"", path.string(), number);
    const double step = static_cast<double>(j["step"].get<std::int64_t>());
    for (const auto& [name, value] : j.items()) {
      if (name == "step") continue;
      if (!value.is_number() && !value.is_null())
        fail("{}:{}: \"{}\" is neither a number nor null", path.string(), number, name);
      MetricSeries& s = out[name];
      s.steps.push_back(step);
      s.values.push_back(value.is_null() ? std::numeric_limits<double>::quiet_NaN()
                                         : value.get<double>());
    }
  }
  if (in.bad()) fail("{}: read failed", path.string());
  return out;
}

std::vector<ReportPlot> report_plots(const std::map<std::string, MetricSeries>& metrics) {
  std::vector<ReportPlot> plots;
  for (const PlotSpec& spec : kPlots) {
    const auto it = metrics.find(spec.metric);
    if (it == metrics.end()) continue;
    ReportPlot plot;
    plot.stem = spec.metric;
    plot.chart.title = spec.title;
    plot.chart.x_label = "optimizer step";
    plot.chart.y_label = spec.y_label;
    plot.chart.y_scale = spec.y_scale;
    core::ChartSeries series;
    series.name = spec.metric;
    series.x = it->second.steps;
    series.y = it->second.values;
    plot.chart.series.push_back(std::move(series));
    plots.push_back(std::move(plot));
  }
  return plots;
}

fs::path write_run_report(const fs::path& run_dir) {
  const std::map<std::string, MetricSeries> metrics = read_metrics_jsonl(run_dir / "metrics.jsonl");
  std::error_code ec;
  fs::create_directories(run_dir / "plots", ec);
  if (ec) fail("{}: cannot create it: {}", (run_dir / "plots").string(), ec.message());
  // Staged as one set, report.md last: a full disk leaves the old report and plots whole.
  core::AtomicFileSet files(run_dir);
  std::string md = "# Training run\n\n" + describe_run(run_dir);
  if (const auto it = metrics.find("loss"); it != metrics.end()) {
    if (const auto s = summarize(it->second))
      md += fmt::format("- loss: {:.4f} at step {}, {:.4f} at step {}, lowest {:.4f} (step {})\n",
                        s->first, s->first_step, s->last, s->last_step, s->min, s->min_step);
    md += fmt::format("- {} metric records in `metrics.jsonl`, steps {} to {}\n",
                      it->second.steps.size(), it->second.steps.front(), it->second.steps.back());
  }
  if (const auto it = metrics.find("skipped"); it != metrics.end()) {
    const auto skipped = std::count(it->second.values.begin(), it->second.values.end(), 1.0);
    if (skipped > 0) md += fmt::format("- {} recorded steps skipped (non-finite)\n", skipped);
  }
  for (const ReportPlot& plot : report_plots(metrics)) {
    core::add_chart(files, "plots/" + plot.stem, plot.chart);
    md += fmt::format("\n## {}\n\n![{}](plots/{}.svg)\n\n[PNG](plots/{}.png)\n", plot.chart.title,
                      plot.stem, plot.stem, plot.stem);
  }
  files.add("report.md", md);
  files.commit();
  return run_dir / "report.md";
}

bool write_run_report_or_warn(const fs::path& run_dir) {
  std::string why;
  try {
    write_run_report(run_dir);
    return true;
  } catch (const Error& e) {
    why = e.what();
  } catch (const fs::filesystem_error& e) {
    why = e.what();
  }
  // An older report.md (of the steps before a resume) must not pass as this run's.
  std::error_code ec;
  const bool removed = fs::remove(run_dir / "report.md", ec);
  // Said even with --quiet: it is output lost, not progress.
  std::fprintf(stderr, "anchorctx: warning: report.md not written%s: %s\n",
               removed ? " (the older one removed)" : "", why.c_str());
  return false;
}

}  // namespace anchorctx::train
