// Reports side by side (compare.h): cells matched by (task, length), differences to the first run
// with a paired or Welch standard error, a markdown table and a plot.
#include "anchorctx/eval/compare.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/core/line_chart.h"

namespace anchorctx::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

double number(const json& v) {
  return v.is_number() ? v.get<double>() : kNan;
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return kNan;
  double s = 0.0;
  for (const double x : v)
    s += x;
  return s / static_cast<double>(v.size());
}

// The sample variance (n - 1); NaN below two values.
double variance_of(const std::vector<double>& v) {
  if (v.size() < 2) return kNan;
  const double m = mean_of(v);
  double s = 0.0;
  for (const double x : v)
    s += (x - m) * (x - m);
  return s / static_cast<double>(v.size() - 1);
}

// One cell of one run: its per-sample values and what pairs them with another run's.
struct Cell {
  std::vector<double> values;
  json pairing;          // samples are the same prompts/windows in two runs whose pairing is equal
  bool pairable = true;  // false: the report does not record what would prove it (older ones)
};

// The difference b - a with its standard error: paired over the samples when their pairing keys
// are equal, else Welch.
void difference(const Cell& a, const Cell& b, RunScore& out) {
  out.diff = mean_of(b.values) - mean_of(a.values);
  out.paired =
      a.pairable && b.pairable && a.pairing == b.pairing && a.values.size() == b.values.size();
  if (out.paired) {
    std::vector<double> d;
    for (std::size_t i = 0; i < a.values.size(); ++i)
      if (std::isfinite(a.values[i]) && std::isfinite(b.values[i]))
        d.push_back(b.values[i] - a.values[i]);
    out.se = std::sqrt(variance_of(d) / static_cast<double>(d.size()));
  } else {
    out.se = std::sqrt(variance_of(a.values) / static_cast<double>(a.values.size()) +
                       variance_of(b.values) / static_cast<double>(b.values.size()));
  }
}

std::string fixed(double v, int digits) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : std::string("-");
}

std::string signed_with_se(const RunScore& r, int digits) {
  if (!std::isfinite(r.diff)) return "-";
  std::string s = fmt::format("{:+.{}f}", r.diff, digits);
  s += std::isfinite(r.se) ? fmt::format(" ± {:.{}f}", r.se, digits) : std::string(" (1 sample)");
  if (std::isfinite(r.se)) s += r.paired ? " p" : " w";
  return s;
}

}  // namespace

json load_report(const fs::path& run) {
  std::error_code ec;
  const fs::path file = fs::is_directory(run, ec) ? run / "report.json" : run;
  if (!fs::exists(file, ec))
    fail("compare: cannot read {} (is {} an `anchorctx eval --out` folder?)", file.string(),
         run.string());
  // Through read_json_file: a FIFO in its place blocked the comparison for good.
  const json j = core::read_json_file(file, "an `anchorctx eval` report");
  if (!j.is_object() || !j.contains("niah") || !j["niah"].is_array() || !j.contains("ppl") ||
      !j["ppl"].is_array() || !j.contains("lengths") || !j["lengths"].is_array())
    fail("compare: {} is not an `anchorctx eval` report (no 'niah', 'ppl' and 'lengths' arrays)",
         file.string());
  // Every value compare_reports reads, with its type: a wrong one used to surface as nlohmann's
  // raw type_error without the file, or (a score or loss) as a silent NaN in the comparison.
  const auto bad = [&](const std::string& where, const std::string& what) {
    fail("compare: {}: {} {}", file.string(), where, what);
  };
  for (std::size_t i = 0; i < j["niah"].size(); ++i) {
    const json& c = j["niah"][i];
    const std::string where = fmt::format("niah[{}]", i);
    if (!c.is_object() || !c.contains("task") || !c.contains("length") || !c.contains("samples") ||
        !c["samples"].is_array())
      bad(where, "lacks task, length or samples");
    if (!c["task"].is_string()) bad(where + ".task", "is not a string");
    if (!c["length"].is_number_integer()) bad(where + ".length", "is not an integer");
    for (std::size_t k = 0; k < c["samples"].size(); ++k) {
      const json& sample = c["samples"][k];
      if (!sample.is_object() || !sample.contains("score") || !sample["score"].is_number())
        bad(fmt::format("{}.samples[{}].score", where, k), "is missing or not a number");
      // A score is the fraction of a sample's answers found (string_match_all): 1e308 made
      // the comparison's mean null, and it exited 0.
      const double score = sample["score"].get<double>();
      if (!(score >= 0.0 && score <= 1.0))
        bad(fmt::format("{}.samples[{}].score", where, k),
            fmt::format("is {}, outside [0, 1] (the fraction of answers found)",
                        sample["score"].dump()));
    }
  }
  for (std::size_t i = 0; i < j["ppl"].size(); ++i) {
    const json& p = j["ppl"][i];
    const std::string where = fmt::format("ppl[{}]", i);
    if (!p.is_object() || !p.contains("length") || !p.contains("sample_loss") ||
        !p["sample_loss"].is_array())
      bad(where, "lacks length or sample_loss");
    if (!p["length"].is_number_integer()) bad(where + ".length", "is not an integer");
    // A cross-entropy is finite and >= 0 (null is how a report writes a non-finite loss).
    for (std::size_t k = 0; k < p["sample_loss"].size(); ++k) {
      const json& loss = p["sample_loss"][k];
      if (loss.is_null()) continue;
      if (!loss.is_number())
        bad(fmt::format("{}.sample_loss[{}]", where, k), "is not a number (or null)");
      if (!(std::isfinite(loss.get<double>()) && loss.get<double>() >= 0.0))
        bad(fmt::format("{}.sample_loss[{}]", where, k),
            fmt::format("is {}, not a finite loss >= 0", loss.dump()));
    }
  }
  return j;
}

Comparison compare_reports(const std::vector<json>& reports,
                           const std::vector<std::string>& names) {
  require(reports.size() == names.size(), "compare: {} reports, {} names", reports.size(),
          names.size());
  if (reports.size() < 2) fail("compare: needs at least two reports, got {}", reports.size());
  const std::size_t R = reports.size();
  Comparison out;
  out.names = names;

  // (task, length) -> per run cell; task order as first met.
  std::vector<std::string> task_order;
  std::set<std::int64_t> lengths;
  std::map<std::pair<std::string, std::int64_t>, std::vector<std::optional<Cell>>> cells;
  for (std::size_t r = 0; r < R; ++r) {
    const json& rep = reports[r];
    for (const json& c : rep["niah"]) {
      const std::string task = c["task"].get<std::string>();
      const std::int64_t length = c["length"].get<std::int64_t>();
      Cell cell;
      json depths = json::array();
      for (const json& s : c["samples"]) {
        cell.values.push_back(100.0 * number(s.value("score", json())));
        depths.push_back(s.value("depth", json()));
      }
      cell.pairing = {rep.value("seed", json()), rep.value("template_set", json()), depths};
      auto& slot = cells[{task, length}];
      slot.resize(R);
      slot[r] = std::move(cell);
      if (std::find(task_order.begin(), task_order.end(), task) == task_order.end())
        task_order.push_back(task);
      lengths.insert(length);
    }
    for (const json& p : rep["ppl"]) {
      const std::int64_t length = p["length"].get<std::int64_t>();
      Cell cell;
      for (const json& v : p["sample_loss"])
        cell.values.push_back(number(v));
      // The windows are the same text when the source, the tokens per window and the count
      // are: windows are cut one after the other from the start of the source (the built-in
      // corpus's first documents do not depend on how many are generated), but at max(lengths)
      // + 1 tokens, so runs with other length lists score other text at a shared length.
      // Reports before ppl_window_tokens cannot tell: Welch.
      const json window_tokens = rep.value("ppl_window_tokens", json());
      cell.pairing = {rep.value("ppl_source", json()), window_tokens, cell.values.size()};
      cell.pairable = window_tokens.is_number_integer();
      auto& slot = cells[{"ppl", length}];
      slot.resize(R);
      slot[r] = std::move(cell);
      lengths.insert(length);
    }
  }
  if (std::any_of(cells.begin(), cells.end(),
                  [](const auto& kv) { return kv.first.first == "ppl"; }))
    task_order.push_back("ppl");  // the loss rows last
  out.lengths.assign(lengths.begin(), lengths.end());

  std::size_t shared = 0;
  for (const std::string& task : task_order)
    for (const std::int64_t length : out.lengths) {
      const auto it = cells.find({task, length});
      if (it == cells.end()) continue;
      const auto& slot = it->second;
      CompareRow row;
      row.task = task;
      row.length = length;
      row.runs.resize(R);
      bool all = true;
      for (std::size_t r = 0; r < R; ++r) {
        RunScore& s = row.runs[r];
        s.present = slot[r].has_value();
        all &= s.present;
        if (!s.present) {
          s.mean = s.diff = s.se = kNan;
          continue;
        }
        s.mean = mean_of(slot[r]->values);
        s.samples = static_cast<std::int64_t>(slot[r]->values.size());
        if (r == 0) {
          s.diff = 0.0;
          s.se = kNan;
        } else if (slot[0]) {
          difference(*slot[0], *slot[r], s);
        } else {
          s.diff = s.se = kNan;
        }
      }
      if (all)
        ++shared;
      else
        out.notes.push_back(fmt::format("{} at {} is missing from some runs", task, length));
      out.rows.push_back(std::move(row));
    }
  if (shared == 0)
    fail(
        "compare: the reports share no (task, length) cell (each run's tasks and lengths "
        "differ)");

  // Averages over the tasks every run has at a length (ppl is a loss, not a score: left out).
  out.average.assign(R, std::vector<double>(out.lengths.size(), kNan));
  for (std::size_t l = 0; l < out.lengths.size(); ++l)
    for (std::size_t r = 0; r < R; ++r) {
      std::vector<double> means;
      for (const CompareRow& row : out.rows)
        if (row.length == out.lengths[l] && row.task != "ppl" &&
            std::all_of(row.runs.begin(), row.runs.end(),
                        [](const RunScore& s) { return s.present; }))
          means.push_back(row.runs[r].mean);
      out.average[r][l] = mean_of(means);
    }

  const auto differs = [&](const char* field) {
    for (std::size_t r = 1; r < R; ++r)
      if (reports[r].value(field, json()) != reports[0].value(field, json())) return true;
    return false;
  };
  for (const char* field : {"seed", "samples", "template_set", "precision", "bf16_compute",
                            "ppl_source", "ppl_window_tokens"})
    if (differs(field))
      out.notes.push_back(
          fmt::format("the runs differ in '{}': cells not paired by sample use "
                      "Welch's standard error",
                      field));
  for (std::size_t r = 0; r < R; ++r)
    if (!reports[r]["ppl"].empty() &&
        !reports[r].value("ppl_window_tokens", json()).is_number_integer())
      out.notes.push_back(fmt::format(
          "{} does not record 'ppl_window_tokens' (an older report): its ppl cells cannot be "
          "shown to score the same windows and use Welch's standard error",
          names[r]));
  return out;
}

json to_json(const Comparison& c) {
  json j;
  j["runs"] = c.names;
  j["lengths"] = c.lengths;
  j["uncertainty"] =
      "standard error of the difference to the first run: paired over samples (same seed, "
      "templates and depths; ppl: same source, window length and count), else Welch";
  json rows = json::array();
  const auto finite = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
  for (const CompareRow& row : c.rows) {
    json runs = json::array();
    for (const RunScore& s : row.runs)
      runs.push_back(s.present ? json{{"mean", finite(s.mean)},
                                      {"samples", s.samples},
                                      {"diff", finite(s.diff)},
                                      {"se", finite(s.se)},
                                      {"paired", s.paired}}
                               : json(nullptr));
    rows.push_back({{"task", row.task}, {"length", row.length}, {"runs", runs}});
  }
  j["rows"] = std::move(rows);
  json avg = json::array();
  for (const auto& run : c.average) {
    json a = json::array();
    for (const double v : run)
      a.push_back(finite(v));
    avg.push_back(std::move(a));
  }
  j["average"] = std::move(avg);
  j["notes"] = c.notes;
  return j;
}

void write_comparison(const Comparison& c, const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    fail("compare: cannot create the folder {}: {}", dir.string(),
         ec ? ec.message() : "a file of that name is in the way");
  const std::size_t R = c.names.size();
  const auto label = [](std::size_t r) { return std::string(1, static_cast<char>('A' + r % 26)); };

  std::string md = "# anchorctx eval --compare\n\n";
  for (std::size_t r = 0; r < R; ++r)
    md += fmt::format("- **{}**: `{}`\n", label(r), c.names[r]);
  md +=
      "\nScores: string_match_all x 100 (ppl rows: mean loss per token). Differences to A with "
      "their standard error across samples: `p` paired over the same samples (same seed, "
      "templates and depths; ppl: the same windows: source, tokens per window, count), `w` "
      "Welch (unpaired).\n\n";
  const auto header = [&](const std::string& first) {
    std::string h = "| " + first + " | length |", sep = "| --- | ---: |";
    for (std::size_t r = 0; r < R; ++r) {
      h += " " + label(r) + " |";
      sep += " ---: |";
      if (r > 0) {
        h += " " + label(r) + " - A |";
        sep += " ---: |";
      }
    }
    return h + "\n" + sep + "\n";
  };
  md += header("task");
  for (const CompareRow& row : c.rows) {
    const int digits = row.task == "ppl" ? 4 : 1;
    md += fmt::format("| {} | {} |", row.task, row.length);
    for (std::size_t r = 0; r < R; ++r) {
      md += " " + fixed(row.runs[r].mean, digits) + " |";
      if (r > 0) md += " " + signed_with_se(row.runs[r], digits) + " |";
    }
    md += "\n";
  }
  for (std::size_t l = 0; l < c.lengths.size(); ++l) {
    if (!std::isfinite(c.average[0][l])) continue;
    md += fmt::format("| **average** | {} |", c.lengths[l]);
    for (std::size_t r = 0; r < R; ++r) {
      md += " **" + fixed(c.average[r][l], 1) + "** |";
      if (r > 0)
        md += " " +
              (std::isfinite(c.average[r][l])
                   ? fmt::format("{:+.1f}", c.average[r][l] - c.average[0][l])
                   : std::string("-")) +
              " |";
    }
    md += "\n";
  }
  if (!c.notes.empty()) {
    md += "\nNotes:\n";
    for (const std::string& n : c.notes)
      md += "- " + n + "\n";
  }
  core::AtomicFileSet files(dir);  // staged, then renamed: the old set stays whole on an error

  core::LineChart chart;
  chart.title = "Accuracy against context length (mean over the tasks all runs have)";
  chart.x_label = "context length (tokens)";
  chart.y_label = "string_match_all (0-100)";
  chart.x_scale = core::AxisScale::categorical;
  for (std::size_t r = 0; r < R; ++r) {
    core::ChartSeries s;
    s.name = label(r) + ": " + c.names[r];
    s.color = static_cast<int>(r);
    for (std::size_t l = 0; l < c.lengths.size(); ++l)
      if (std::isfinite(c.average[r][l])) {
        s.x.push_back(static_cast<double>(c.lengths[l]));
        s.y.push_back(c.average[r][l]);
      }
    if (!s.x.empty()) chart.series.push_back(std::move(s));
  }
  if (!chart.series.empty()) core::add_chart(files, "compare_accuracy_vs_length", chart);
  files.add("compare.md", md);
  files.add("compare.json", to_json(c).dump(2) + "\n");
  files.commit({"compare_accuracy_vs_length.svg", "compare_accuracy_vs_length.png"});
}

}  // namespace anchorctx::eval
