// The report folder of an evaluation run (evaluation.h): report.json, report.md with the table
// (rows tasks, columns lengths, an average row: the layout of the paper's RULER table) and the
// ppl-by-position table, and three plots.
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/line_chart.h"
#include "anchorctx/eval/evaluation.h"
#include "anchorctx/eval/ruler.h"
#include "eval/heatmap.h"

namespace anchorctx::eval {
namespace {

std::string cell(double v, const char* format = "{:.1f}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(format), v) : std::string("-");
}

std::string markdown(const EvalReport& r) {
  std::string md = fmt::format("# anchorctx eval: {}\n\n", r.model);
  // The ppl windows actually scored: fewer than --samples when the data runs out.
  const std::int64_t windows =
      r.ppl.empty() ? r.samples : static_cast<std::int64_t>(r.ppl.front().sample_mean.size());
  md += fmt::format(
      "precision {}{}, templates `{}`, {} samples per cell{}, seed {}; {:.1f} s; prefill {} "
      "tokens at {:.0f} tokens/s, decode {} tokens at {:.1f} tokens/s.\n\n",
      r.precision, r.bf16_compute.empty() ? "" : fmt::format(" ({} compute)", r.bf16_compute),
      r.template_set, r.samples,
      windows == r.samples ? std::string()
                           : fmt::format(" (ppl: {} windows, all the data holds)", windows),
      r.seed, r.seconds, r.stats.prefill_tokens,
      r.stats.prefill_s > 0 ? r.stats.prefill_tokens / r.stats.prefill_s : 0.0,
      r.stats.decode_tokens, r.stats.decode_s > 0 ? r.stats.decode_tokens / r.stats.decode_s : 0.0);
  if (!r.niah.empty()) {
    md += "## RULER tasks (string_match_all, 0-100)\n\n| task |";
    for (const std::int64_t l : r.lengths)
      md += fmt::format(" {} |", l);
    md += " avg |\n| --- |";
    for (std::size_t i = 0; i <= r.lengths.size(); ++i)
      md += " ---: |";
    md += "\n";
    std::map<std::int64_t, std::pair<double, int>> per_length;
    std::vector<std::string> order;
    std::map<std::string, std::map<std::int64_t, double>> table;
    for (const NiahCell& c : r.niah) {
      if (!table.count(c.task)) order.push_back(c.task);
      table[c.task][c.length] = c.mean();
      per_length[c.length].first += c.mean();
      ++per_length[c.length].second;
    }
    for (const std::string& task : order) {
      md += "| " + task + " |";
      double sum = 0.0;
      for (const std::int64_t l : r.lengths) {
        md += " " + cell(table[task][l]) + " |";
        sum += table[task][l];
      }
      md += " " + cell(sum / static_cast<double>(r.lengths.size())) + " |\n";
    }
    md += "| **average** |";
    double all = 0.0;
    for (const std::int64_t l : r.lengths) {
      const double avg = per_length[l].first / per_length[l].second;
      all += avg;
      md += " **" + cell(avg) + "** |";
    }
    md += " **" + cell(all / static_cast<double>(r.lengths.size())) + "** |\n\n";
    md +=
        "Plots: `accuracy_vs_length.svg`, `niah_heatmap.svg` (mean over the niah tasks, when "
        "run).\n\n";
  }
  if (!r.ppl.empty()) {
    md += fmt::format("## Perplexity ({})\n\n| length | windows | tokens | loss | ppl |",
                      r.ppl_source);
    const std::vector<PplBucket>& widest = r.ppl.back().buckets;
    for (const PplBucket& b : widest)
      md += fmt::format(" ppl {}-{} |", b.begin, b.end);
    md += "\n| ---: | ---: | ---: | ---: | ---: |";
    for (std::size_t i = 0; i < widest.size(); ++i)
      md += " ---: |";
    md += "\n";
    bool cut_bucket = false;  // a shorter length's last bucket, marked *
    for (const PplResult& p : r.ppl) {
      md +=
          fmt::format("| {} | {} | {} | {} | {} |", p.length, p.sample_mean.size(), p.total.tokens,
                      cell(p.total.mean(), "{:.4f}"), cell(p.total.ppl(), "{:.3f}"));
      for (std::size_t i = 0; i < widest.size(); ++i) {
        const bool cut = i < p.buckets.size() && p.buckets[i].end != widest[i].end;
        cut_bucket = cut_bucket || cut;
        md += " " +
              (i < p.buckets.size() ? cell(p.buckets[i].tally.ppl(), "{:.3f}") + (cut ? "*" : "")
                                    : std::string("")) +
              " |";
      }
      md += "\n";
    }
    md += cut_bucket ? "\n(* the last bucket of a shorter length ends at that length.) Plot: "
                     : "\nPlot: ";
    md += "`ppl_by_position.svg`.\n";
  }
  return md;
}

}  // namespace

void write_report(const EvalReport& r, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!std::filesystem::is_directory(dir))
    fail("eval: cannot create the report folder {}: {}", dir.string(),
         ec ? ec.message() : "a file of that name is in the way");
  // Every file is staged before any replaces its old version (a full disk leaves the old
  // report whole); report.json goes last, so a new one means the whole report is new.
  core::AtomicFileSet files(dir);

  if (!r.niah.empty()) {
    core::LineChart acc;
    acc.title = "RULER tasks: accuracy against context length";
    acc.x_label = "context length (tokens)";
    acc.y_label = "string_match_all (0-100)";
    acc.x_scale = core::AxisScale::categorical;
    std::map<std::string, core::ChartSeries> series;
    std::vector<std::string> order;
    for (const NiahCell& c : r.niah) {
      if (!series.count(c.task)) {
        order.push_back(c.task);
        series[c.task].name = c.task;
        series[c.task].color = static_cast<int>(order.size() - 1);
      }
      series[c.task].x.push_back(static_cast<double>(c.length));
      series[c.task].y.push_back(c.mean());
    }
    for (const std::string& t : order)
      acc.series.push_back(series[t]);
    core::add_chart(files, "accuracy_vs_length", acc);

    // Heatmap: rows depths, columns lengths, mean over the needle tasks (vt, cwe and fwe have no
    // depth) and samples at that depth.
    std::set<double> depths;
    for (const NiahCell& c : r.niah)
      if (find_niah_task(c.task))
        for (const NiahRecord& s : c.samples)
          depths.insert(s.depth);
    Heatmap map;
    map.title = "Needle accuracy by depth and length (mean over tasks)";
    for (const std::int64_t l : r.lengths)
      map.columns.push_back(std::to_string(l));
    for (const double d : depths) {
      map.rows.push_back(fmt::format("{:.0f}%", d * 100));
      std::vector<double> row;
      for (const std::int64_t l : r.lengths) {
        double sum = 0.0;
        int n = 0;
        for (const NiahCell& c : r.niah)
          if (c.length == l && find_niah_task(c.task))
            for (const NiahRecord& s : c.samples)
              if (s.depth == d) {
                sum += s.score;
                ++n;
              }
        row.push_back(n ? 100.0 * sum / n : std::nan(""));
      }
      map.values.push_back(row);
    }
    if (!depths.empty()) {
      const RenderedHeatmap h = render_heatmap(map);
      files.add("niah_heatmap.svg", h.svg);
      files.add("niah_heatmap.png", h.png);
    }
  }
  if (!r.ppl.empty()) {
    core::LineChart chart;
    chart.title = "Perplexity by token position";
    chart.x_label = "position bucket end (tokens)";
    chart.y_label = "perplexity";
    chart.x_scale = core::AxisScale::log;
    int color = 0;
    for (const PplResult& p : r.ppl) {
      core::ChartSeries s;
      s.name = fmt::format("length {}", p.length);
      s.color = color++;
      for (const PplBucket& b : p.buckets) {
        s.x.push_back(static_cast<double>(b.end));
        s.y.push_back(b.tally.ppl());
      }
      chart.series.push_back(std::move(s));
    }
    core::add_chart(files, "ppl_by_position", chart);
  }
  files.add("report.md", markdown(r));
  files.add("report.json", to_json(r).dump(2) + "\n");
  // A plot of an earlier report that this one has no data for would read as this one's.
  files.commit({"accuracy_vs_length.svg", "accuracy_vs_length.png", "niah_heatmap.svg",
                "niah_heatmap.png", "ppl_by_position.svg", "ppl_by_position.png"});
}

}  // namespace anchorctx::eval
