// write_study_report (study.h): report.md, report.json and plots/ from the study folder's done
// markers. Every number comes from a file a finished sub-run wrote; pending runs are listed.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/line_chart.h"
#include "anchorctx/study/study.h"
#include "anchorctx/study/verdict.h"
#include "study/files.h"
#include "study/summary.h"

namespace anchorctx::study {

namespace fs = std::filesystem;

namespace {

// A stage-1 run's done markers, each null while that step is pending; `failed` its failed.json
// (a diverged run: a result, never pending).
struct RunData {
  RunId id;
  nlohmann::json train, eval, drift, failed;
  bool trained() const { return !train.is_null(); }
  bool evaluated() const { return !eval.is_null(); }
  bool drifted() const { return !drift.is_null(); }
  bool diverged() const { return !failed.is_null(); }
};

// Why a variant's values include a non-finite one, by variant: said in the verdict's reason
// instead of "a non-finite value" where the study knows the cause.
using Notes = std::map<std::string, std::string>;

void add_note(Notes& notes, const std::string& variant, const std::string& note) {
  std::string& n = notes[variant];
  n += (n.empty() ? "" : "; ") + note;
}

// The judgement with the reason the study knows for a claim it could not compute: the first of
// the claim's variants (the order judge reads them) with a note, unless one before it was not run.
Judgement judge_with_notes(const Claim& claim, const SeedValues& values, double min_effect,
                           const Notes& notes) {
  Judgement j = judge(claim, values, min_effect);
  if (j.effect_known) return j;
  for (const Term& t : claim.terms) {
    const auto it = values.find(t.variant);
    if (it == values.end() || it->second.empty()) break;
    if (std::all_of(it->second.begin(), it->second.end(),
                    [](double x) { return std::isfinite(x); }))
      continue;
    const auto note = notes.find(t.variant);
    if (note != notes.end()) j.reason = fmt::format("variant {}: {}", t.variant, note->second);
    break;
  }
  return j;
}

// A known number, or null (report.json: a claim that could not be computed).
nlohmann::json number_or_null(double value, bool known) {
  return known ? nlohmann::json(value) : nlohmann::json(nullptr);
}

// Mean over tasks of the run's score at `length`; NaN when a task lacks it.
double score_at(const nlohmann::json& eval, std::int64_t length) {
  const std::string key = std::to_string(length);
  double sum = 0.0;
  int n = 0;
  for (const auto& [task, by_length] : eval.at("scores").items()) {
    if (!by_length.contains(key) || by_length.at(key).is_null()) return std::nan("");
    sum += by_length.at(key).get<double>();
    ++n;
  }
  return n > 0 ? sum / n : std::nan("");
}

std::string utc_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

}  // namespace

void write_study_report(const StudyConfig& c, const fs::path& out, const StudyOptions& options) {
  // Only a study folder gets a report (run_study writes study.json first), and it describes
  // the settings the folder was run with, never others: --report-only aimed at a training run's
  // folder overwrote its report.md, and at a mistyped path created a folder of an empty study.
  std::error_code ec;
  if (!fs::is_directory(out, ec))
    fail("study: {} is no folder: --report-only rewrites the report of an existing study folder",
         out.string());
  if (!fs::exists(fs::symlink_status(out / "study.json", ec)))
    fail(
        "study: {} is not a study folder (it has no study.json): --report-only rewrites the "
        "report of a folder `anchorctx study --out` started, and writes nothing elsewhere",
        out.string());
  const std::string diff = settings_difference(recorded_settings(out / "study.json"), c.to_json());
  require(diff.empty(),
          "study: {} was run with other settings than these: {}; give the study's own settings "
          "to rewrite its report",
          out.string(), diff);
  std::vector<RunData> runs;
  for (const RunId& id : stage1_runs(c)) {
    const fs::path dir = out / "stage1" / id.name();
    const auto marker = [&](const char* name, auto read) {
      return fs::exists(dir / name) ? read(dir / name) : nlohmann::json(nullptr);
    };
    runs.push_back(
        {id, marker("train-done.json", read_train_done),
         marker("eval-done.json",
                [&](const fs::path& p) { return read_eval_done(p, c.eval_tasks, c.eval_lengths); }),
         marker("drift-done.json", read_drift_done), marker("failed.json", read_failed_marker)});
  }
  const std::int64_t window = c.stage1_seq_len;
  std::vector<std::int64_t> in_window;
  for (const std::int64_t l : c.eval_lengths)
    if (l <= window) in_window.push_back(l);

  // Per-seed values by variant: the primary score and the step time. A diverged run counts as
  // a seed without a value (NaN): its variant's claims are inconclusive, saying why.
  SeedValues primary, step_s;
  Notes primary_notes, step_notes;
  std::map<std::string, std::map<std::int64_t, std::vector<double>>> by_length;
  const double nan = std::nan("");
  for (const RunData& r : runs) {
    if (r.diverged() && !r.evaluated()) {
      const std::string note = fmt::format("run {} diverged in training", r.id.name());
      primary[r.id.variant].push_back(nan);
      for (const std::int64_t l : c.eval_lengths)
        by_length[r.id.variant][l].push_back(nan);
      add_note(primary_notes, r.id.variant, note);
      if (!r.trained()) {
        step_s[r.id.variant].push_back(nan);
        add_note(step_notes, r.id.variant, note);
      }
    }
    if (r.evaluated()) {
      double sum = 0.0;
      for (const std::int64_t l : in_window)
        sum += score_at(r.eval, l);
      primary[r.id.variant].push_back(
          in_window.empty() ? std::nan("") : sum / static_cast<double>(in_window.size()));
      for (const std::int64_t l : c.eval_lengths)
        by_length[r.id.variant][l].push_back(score_at(r.eval, l));
    }
    if (r.trained()) {
      // The median leaves out the first step (it pays for allocation): a run of one step has
      // no step time, which the report says rather than calling the run pending.
      const nlohmann::json& median = r.train.at("step_s_median");
      step_s[r.id.variant].push_back(median.is_null() ? nan : median.get<double>());
      if (median.is_null())
        add_note(step_notes, r.id.variant,
                 fmt::format("run {} has no measured step time (the median leaves out the first "
                             "step{})",
                             r.id.name(),
                             c.stage1_steps < 2 ? "; stage-1 runs of 1 step have no other" : ""));
    }
  }

  std::string md =
      "# anchorctx study: context extension with full, intra-document and "
      "AnchorAttention\n\n";
  int done = 0;
  std::string pending, failed;
  nlohmann::json failed_json = nlohmann::json::array();
  for (const RunData& r : runs) {
    if (r.evaluated()) {
      ++done;
    } else if (r.diverged()) {
      failed += (failed.empty() ? "" : "; ") +
                fmt::format("{} ({})", r.id.name(), r.failed.at("reason").get<std::string>());
      failed_json.push_back(r.id.name());
    } else {
      pending += (pending.empty() ? "" : ", ") + r.id.name();
    }
  }
  md += fmt::format(
      "Written {} on a machine with {} hardware threads. Stage-1 runs finished and evaluated: "
      "{} of {}.{}{}\n\n",
      utc_now(), std::thread::hardware_concurrency(), done, runs.size(),
      pending.empty() ? std::string() : " **Pending: " + pending + ".**",
      failed.empty()
          ? std::string()
          : " **Diverged in training (a result: no value, claims inconclusive): " + failed + ".**");
  if (!options.command_line.empty())
    md += fmt::format("Regenerate every number: `{}`\n\n", options.command_line);
  md += "Question, setup, the pre-registered verdict rule: docs/STUDY.md.\n\n";

  // The paper's RULER layout: variants x lengths (longest first), mean [min, max] over seeds.
  md += fmt::format(
      "## Retrieval score (0-100, mean over tasks {}; mean [min, max] over seeds)\n\n"
      "Training window {}; lengths above it are beyond the window. The verdicts use the mean "
      "over lengths up to the window.\n\n| variant | seeds |",
      nlohmann::json(c.eval_tasks).dump(), window);
  std::vector<std::int64_t> desc(c.eval_lengths.rbegin(), c.eval_lengths.rend());
  for (const std::int64_t l : desc)
    md += fmt::format(" {} |", l);
  md += " mean <= window |\n| --- | --- |";
  for (std::size_t i = 0; i <= desc.size(); ++i)
    md += " --- |";
  md += "\n";
  for (const std::string& v : c.variants) {
    const Variant& var = *find_variant(v);
    const auto it = primary.find(v);
    md += fmt::format("| {} | {} |", var.label, it == primary.end() ? 0 : it->second.size());
    for (const std::int64_t l : desc) {
      const auto bl = by_length.find(v);
      md += " " +
            format_cell(summarize(bl == by_length.end() ? std::vector<double>{} : bl->second[l])) +
            " |";
    }
    md += " " + format_cell(summarize(it == primary.end() ? std::vector<double>{} : it->second)) +
          " |\n";
  }
  md += "\n![accuracy vs length](plots/accuracy_vs_length.svg)\n\n";

  // Stage 0's own retrieval: the skill stage 1 extends. At the floor, no stage-1 contrast of
  // retrieval can show, whatever the variants do.
  const std::int64_t check = stage0_check_length(c);
  md += "## Stage 0's retrieval at its own window\n\n";
  const nlohmann::json stage0_eval =
      fs::exists(out / "stage0" / "eval-done.json")
          ? read_eval_done(out / "stage0" / "eval-done.json", c.eval_tasks, {check})
          : nlohmann::json(nullptr);
  if (!stage0_eval.is_null()) {
    md += fmt::format(
        "The stage-0 model (window {}, RoPE base {}, before stage 1) on the same tasks at {} "
        "tokens, {} prompts per task:",
        c.stage0_seq_len, c.stage0_rope_theta, check, 4 * c.eval_samples);
    const std::string key = std::to_string(check);
    for (const auto& [task, by_length] : stage0_eval.at("scores").items()) {
      const bool scored = by_length.contains(key) && !by_length.at(key).is_null();
      md += fmt::format(" {} {},", task,
                        scored ? fmt::format("{:.1f}", by_length.at(key).get<double>()) : "n/a");
    }
    md += fmt::format(
        " mean **{:.1f}**. Stage 1 extends this skill to the longer window; where it is near 0 "
        "the retrieval contrasts below compare models that never learned the lookup.\n\n",
        score_at(stage0_eval, check));
  } else {
    md += "Pending.\n\n";
  }

  // Perplexity by position bucket at the longest length (loss per token, mean over seeds).
  const std::int64_t longest = c.eval_lengths.back();
  md += fmt::format(
      "## Held-out loss by position at length {} (nats per token, mean over seeds)\n\n", longest);
  std::vector<std::pair<std::int64_t, std::int64_t>> buckets;
  std::map<std::string, std::map<std::int64_t, std::vector<double>>> bucket_loss;
  std::map<std::string, int> no_loss;  // runs with no loss at `longest`: diverged, or none
  for (const RunData& r : runs) {
    if (r.diverged() && !r.evaluated()) ++no_loss[r.id.variant];
    if (!r.evaluated()) continue;
    bool found = false;
    for (const nlohmann::json& p : r.eval.at("ppl"))
      found = found || p.at("length").get<std::int64_t>() == longest;
    if (!found) ++no_loss[r.id.variant];
    for (const nlohmann::json& p : r.eval.at("ppl")) {
      if (p.at("length").get<std::int64_t>() != longest) continue;
      if (buckets.empty())
        for (const nlohmann::json& b : p.at("buckets"))
          buckets.emplace_back(b.at(0).get<std::int64_t>(), b.at(1).get<std::int64_t>());
      for (const nlohmann::json& b : p.at("buckets"))
        bucket_loss[r.id.variant][b.at(0).get<std::int64_t>()].push_back(
            b.at(2).is_null() ? std::nan("") : b.at(2).get<double>());
    }
  }
  if (buckets.empty()) {
    md += "No run evaluated yet.\n\n";
  } else {
    md += "| variant |";
    for (const auto& [b, e] : buckets)
      md += fmt::format(" {}-{} |", b, e);
    md += "\n| --- |";
    for (std::size_t i = 0; i < buckets.size(); ++i)
      md += " --- |";
    md += "\n";
    for (const std::string& v : c.variants) {
      md += "| " + find_variant(v)->label + " |";
      for (const auto& [b, e] : buckets) {
        // A run without this length's loss counts as a seed without a value, as a NaN does.
        std::vector<double> values =
            bucket_loss.contains(v) ? bucket_loss[v][b] : std::vector<double>{};
        values.insert(values.end(), static_cast<std::size_t>(no_loss[v]), nan);
        md += fmt::format(" {} |", format_mean(summarize(values), 3));
      }
      md += "\n";
    }
    md += "\n";
  }

  // Step time per variant.
  md +=
      "## Training step time at the long window (median seconds per step; mean [min, max] "
      "over seeds)\n\n| variant | s/step | vs full |\n| --- | --- | --- |\n";
  const double full_s = step_s.contains("full") ? summarize(step_s["full"]).mean : std::nan("");
  for (const std::string& v : c.variants) {
    if (!step_s.contains(v)) {
      md += fmt::format("| {} | pending | |\n", find_variant(v)->label);
      continue;
    }
    const Cell cell = summarize(step_s[v]);
    const std::string text = cell.n == 0 && c.stage1_steps < 2 && !primary_notes.contains(v)
                                 ? std::string("not measured (1 step)")
                                 : format_cell(cell, 2);
    md += fmt::format(
        "| {} | {} | {} |\n", find_variant(v)->label, text,
        std::isfinite(full_s) && cell.n > 0 ? fmt::format("{:.2f}x", cell.mean / full_s) : "");
  }
  md +=
      "\nMeasured while the study ran; on a shared machine the absolute times move with the "
      "load, and ratios from one study are comparable only when the load was steady.";
  if (c.stage1_steps < 2)
    md +=
        " The median leaves out each run's first step (it pays for allocation): runs of one "
        "stage-1 step have no step time.";
  md += "\n\n";

  // The bf16 RoPE drift of the final models: does training with anchor positions change it?
  // One column per (drift-done.json key, RoPE mode): per variant, the values of its seeds.
  struct DriftColumn {
    const char* label;
    const char* key;
    const char* mode;
    int decimals;
  };
  constexpr DriftColumn kDriftColumns[] = {
      {"D, hf_bf16 RoPE", "D", "hf_bf16", 5},
      {"D without the first token", "D_excl_first", "hf_bf16", 5},
      {"first token's share", "first_token_share", "hf_bf16", 3},
      {"D, fp32 (floor)", "D", "fp32", 5}};
  std::map<std::string, std::vector<std::vector<double>>> drift;  // variant -> column -> seeds
  for (const RunData& r : runs) {
    if (!r.drifted() && !r.diverged()) continue;
    std::vector<std::vector<double>>& columns = drift[r.id.variant];
    columns.resize(std::size(kDriftColumns));
    for (std::size_t k = 0; k < std::size(kDriftColumns); ++k) {
      if (!r.drifted()) {  // diverged: a seed without a value
        columns[k].push_back(nan);
        continue;
      }
      const nlohmann::json& by_mode = r.drift.at(kDriftColumns[k].key);
      const char* mode = kDriftColumns[k].mode;
      columns[k].push_back(by_mode.contains(mode) && !by_mode.at(mode).is_null()
                               ? by_mode.at(mode).get<double>()
                               : nan);
    }
  }
  md += fmt::format(
      "## bf16 RoPE drift of the final models (`anchorctx rope-drift`; mean [min, max] over "
      "seeds)\n\n"
      "D: how much the attention moves when every position id is shifted by delta1 against a "
      "shift of 16 (0 in exact arithmetic), the mean over the paper's 19 delta1 values, on one "
      "held-out sequence of {} tokens; per-run reports in stage1/<run>/drift/.\n\n| variant |",
      c.stage1_seq_len);
  for (const DriftColumn& column : kDriftColumns)
    md += fmt::format(" {} |", column.label);
  md += "\n| --- |";
  for (std::size_t k = 0; k < std::size(kDriftColumns); ++k)
    md += " --- |";
  md += "\n";
  for (const std::string& v : c.variants) {
    const Variant& var = *find_variant(v);
    if (!drift.contains(v)) {
      md += "| " + var.label + " | pending |";
      for (std::size_t k = 1; k < std::size(kDriftColumns); ++k)
        md += " |";
      md += "\n";
      continue;
    }
    md += "| " + var.label + " |";
    for (std::size_t k = 0; k < std::size(kDriftColumns); ++k)
      md += " " + format_cell(summarize(drift[v][k]), kDriftColumns[k].decimals) + " |";
    md += "\n";
  }
  md += "\n";

  // Verdicts by the pre-registered rule.
  md += fmt::format(
      "## Verdicts (rule: docs/STUDY.md; min effect {} score points)\n\n"
      "| claim | statement | verdict | evidence |\n| --- | --- | --- | --- |\n",
      c.min_effect);
  nlohmann::json verdicts = nlohmann::json::array();
  for (const Claim& claim : paper_claims()) {
    const bool time = claim.metric == "step_s";
    const Judgement j = judge_with_notes(claim, time ? step_s : primary, time ? 0.0 : c.min_effect,
                                         time ? step_notes : primary_notes);
    md += fmt::format("| {} | {} | {} | {} ({}) |\n", claim.id, claim.statement,
                      to_string(j.verdict), j.reason, time ? "seconds per step" : "score points");
    verdicts.push_back({{"claim", claim.id},
                        {"statement", claim.statement},
                        {"verdict", std::string(to_string(j.verdict))},
                        // null where the claim could not be computed (the reason says why)
                        {"effect", number_or_null(j.effect, j.effect_known)},
                        {"spread", number_or_null(j.spread, j.spread_known)},
                        {"threshold", number_or_null(j.threshold, j.spread_known)},
                        {"reason", j.reason}});
  }

  // Loss curves.
  md +=
      "\n## Loss curves\n\n![stage 1 loss](plots/stage1_loss.svg)\n\n"
      "![stage 0 loss](plots/stage0_loss.svg)\n\n";
  md += "## Settings\n\n| setting | value |\n| --- | --- |\n";
  const nlohmann::json settings = c.to_json();  // a named object: items() of a temporary dangles
  for (auto it = settings.begin(); it != settings.end(); ++it)
    md += fmt::format("| {} | `{}` |\n", it.key(), it.value().dump());

  // Plots.
  fs::create_directories(out / "plots");
  // Every file is staged before any replaces its old version (a full disk leaves the old
  // report whole); report.json goes last, so a new one means the whole report is new.
  core::AtomicFileSet files(out);
  core::LineChart acc;
  acc.title = "Retrieval score vs context length (mean over seeds)";
  acc.x_label = "context length (tokens)";
  acc.y_label = "score (0-100)";
  acc.x_scale = core::AxisScale::categorical;
  core::LineChart s1;
  s1.title = fmt::format("Stage 1 training loss (seed {})", c.seeds.front());
  s1.x_label = "step";
  s1.y_label = "loss";
  int color = 0;
  for (const std::string& v : c.variants) {
    const Variant& var = *find_variant(v);
    if (by_length.contains(v)) {
      core::ChartSeries series{var.name, {}, {}, color, var.control};
      for (const std::int64_t l : c.eval_lengths) {
        const double y = summarize(by_length[v][l]).mean;
        if (!std::isfinite(y)) continue;  // no value at this length
        series.x.push_back(static_cast<double>(l));
        series.y.push_back(y);
      }
      acc.series.push_back(series);
    }
    for (const RunData& r : runs)
      if (r.trained() && r.id.variant == v && r.id.seed == c.seeds.front()) {
        core::ChartSeries series{var.name, {}, {}, color, var.control};
        for (const nlohmann::json& p : r.train.at("loss")) {
          series.x.push_back(p.at(0).get<double>());
          series.y.push_back(p.at(1).get<double>());
        }
        s1.series.push_back(series);
      }
    ++color;
  }
  core::add_chart(files, "plots/accuracy_vs_length", acc);
  core::add_chart(files, "plots/stage1_loss", s1);
  core::LineChart s0;
  s0.title = "Stage 0 training loss";
  s0.x_label = "step";
  s0.y_label = "loss";
  if (fs::exists(out / "stage0" / "run" / "metrics.jsonl")) {
    const nlohmann::json t = train_summary(out / "stage0" / "run", "");
    core::ChartSeries series{"stage 0", {}, {}, 0, false};
    for (const nlohmann::json& p : t.at("loss")) {
      series.x.push_back(p.at(0).get<double>());
      series.y.push_back(p.at(1).get<double>());
    }
    s0.series.push_back(series);
  }
  core::add_chart(files, "plots/stage0_loss", s0);

  nlohmann::json runs_json = nlohmann::json::object();
  for (const RunData& r : runs)
    runs_json[r.id.name()] = {
        {"train", r.train}, {"eval", r.eval}, {"drift", r.drift}, {"failed", r.failed}};
  files.add("report.md", md);
  files.add("report.json", nlohmann::json{{"config", c.to_json()},
                                          {"stage0", stage0_eval},
                                          {"runs", runs_json},
                                          {"verdicts", verdicts},
                                          {"finished", done},
                                          {"diverged", failed_json},
                                          {"planned", runs.size()}}
                                   .dump(1) +
                               "\n");
  files.commit();
}

}  // namespace anchorctx::study
