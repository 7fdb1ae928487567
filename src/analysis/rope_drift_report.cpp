// rope-drift: the JSON object, the SVG plots and report.md (docs/rope-drift.md).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/analysis/rope_drift.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/line_chart.h"

namespace anchorctx::analysis {

using core::AxisScale;
using core::ChartSeries;
using core::LineChart;
using core::render_chart;
using core::RenderedChart;

nlohmann::json to_json(const RopeDriftReport& report) {
  nlohmann::json out;
  out["seq_len"] = report.seq_len;
  out["sequences"] = report.sequences;
  out["model"] = {{"layers", report.layers},
                  {"heads", report.heads},
                  {"kv_heads", report.kv_heads},
                  {"head_dim", report.head_dim}};
  out["results"] = nlohmann::json::array();
  for (const DriftResult& r : report.results)
    out["results"].push_back({{"mode", r.mode},
                              {"policy", to_string(r.policy)},
                              {"delta1", r.delta1},
                              {"delta2", r.delta2},
                              {"D", r.D},
                              {"D_excl_first", r.D_excl_first},
                              {"first_token", r.per_token.empty() ? 0.0 : r.per_token[0]}});
  out["logit_growth"] = nlohmann::json::array();
  for (const LogitGrowth& g : report.logit_growth)
    out["logit_growth"].push_back({{"mode", g.mode},
                                   {"policy", to_string(g.policy)},
                                   {"delta1", g.delta1},
                                   {"delta2", g.delta2},
                                   {"T", g.length},
                                   {"D_logit", g.D_logit}});
  out["first_token_share"] = nlohmann::json::array();
  for (const FirstTokenShare& s : report.first_token_share)
    out["first_token_share"].push_back({{"mode", s.mode},
                                        {"policy", to_string(s.policy)},
                                        {"share", s.share},
                                        {"rank", s.rank},
                                        {"largest_other_token", s.largest_other_token},
                                        {"largest_other_share", s.largest_other_share},
                                        {"first_key_attention", s.first_key_attention}});
  out["seconds"] = report.seconds;
  return out;
}

namespace {

std::string key(const std::string& mode, PositionPolicy policy) {
  return mode + "/" + std::string(to_string(policy));
}

// Colour by precision mode, dashes for the anchor policy: the same look in every chart.
ChartSeries styled(const std::string& mode, PositionPolicy policy) {
  ChartSeries s;
  s.name = key(mode, policy);
  s.color = mode == "fp32" ? 0 : mode == "hf_bf16" ? 1 : mode == "exact" ? 2 : 3;
  s.dashed = policy == PositionPolicy::anchor;
  return s;
}

}  // namespace

void write_report(const RopeDriftReport& report, const std::string& title,
                  const std::string& dir_name) {
  const std::filesystem::path dir(dir_name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require(!ec, "rope-drift: cannot create {}: {}", dir_name, ec.message());
  // Every file is staged before any replaces its old version (a full disk leaves the old
  // report whole); report.json goes last, so a new one means the whole report is new.
  core::AtomicFileSet files(dir);

  // Per (mode, policy): mean D over delta1 != delta2, and the curves.
  std::map<std::string, ChartSeries> d_curves;
  std::vector<std::string> order;
  std::map<std::string, double> mean_d, mean_excl;
  std::map<std::string, int> count;
  for (const DriftResult& r : report.results) {
    const std::string k = key(r.mode, r.policy);
    if (!d_curves.count(k)) {
      order.push_back(k);
      d_curves[k] = styled(r.mode, r.policy);
    }
    d_curves[k].x.push_back(static_cast<double>(r.delta1));
    d_curves[k].y.push_back(r.D);
    if (r.delta1 != r.delta2) {
      mean_d[k] += r.D;
      mean_excl[k] += r.D_excl_first;
      ++count[k];
    }
  }
  for (auto& [k, v] : mean_d)
    v /= std::max(1, count[k]);
  for (auto& [k, v] : mean_excl)
    v /= std::max(1, count[k]);
  LineChart d_chart;
  d_chart.title =
      fmt::format("D(delta1, delta2 = {}), T = {}",
                  report.results.empty() ? 0 : report.results[0].delta2, report.seq_len);
  d_chart.x_label = "delta1 (one slot per measured value)";
  d_chart.y_label = "D";
  d_chart.x_scale = AxisScale::categorical;
  d_chart.y_scale = AxisScale::log;
  for (const auto& k : order)
    d_chart.series.push_back(d_curves[k]);
  core::add_chart(files, "d_vs_delta", d_chart);

  // Per-token contribution, summed over delta1, for the first policy measured (global by
  // default: under anchor the first key's real distance change dominates c_0).
  LineChart tok_chart;
  tok_chart.x_label = "key position j + 1";
  tok_chart.y_label = "c_j summed over delta1";
  tok_chart.x_scale = tok_chart.y_scale = AxisScale::log;
  std::map<std::string, std::size_t> tok_index;
  for (const DriftResult& r : report.results) {
    if (r.policy != report.results[0].policy) continue;
    tok_chart.title = fmt::format("per-key contribution c_j ({} policy)", to_string(r.policy));
    const std::string k = key(r.mode, r.policy);
    if (!tok_index.count(k)) {
      tok_index[k] = tok_chart.series.size();
      ChartSeries s = styled(r.mode, r.policy);
      s.y.assign(r.per_token.size(), 0.0);
      for (std::size_t j = 0; j < r.per_token.size(); ++j)
        s.x.push_back(static_cast<double>(j + 1));
      tok_chart.series.push_back(std::move(s));
    }
    ChartSeries& s = tok_chart.series[tok_index[k]];
    for (std::size_t j = 0; j < r.per_token.size(); ++j)
      s.y[j] += r.per_token[j];
  }
  core::add_chart(files, "per_token", tok_chart);

  std::map<std::string, ChartSeries> lg;
  std::vector<std::string> lg_order;
  for (const LogitGrowth& g : report.logit_growth) {
    const std::string k = key(g.mode, g.policy);
    if (!lg.count(k)) {
      lg_order.push_back(k);
      lg[k] = styled(g.mode, g.policy);
    }
    lg[k].x.push_back(static_cast<double>(g.length));
    lg[k].y.push_back(g.D_logit);
  }
  LineChart lg_chart;
  lg_chart.title = fmt::format("D_logit on the first key (delta1 = {}) against length",
                               report.logit_growth.empty() ? 0 : report.logit_growth[0].delta1);
  // The lengths double, so one slot per length is a log scale labelled with every length.
  lg_chart.x_label = "length T (one slot per measured length)";
  lg_chart.y_label = "D_logit";
  lg_chart.x_scale = AxisScale::categorical;
  lg_chart.y_scale = AxisScale::log;
  for (const auto& k : lg_order)
    lg_chart.series.push_back(lg[k]);
  core::add_chart(files, "d_logit", lg_chart);

  // report.md: the numbers, then sentences chosen from them.
  std::string md = fmt::format(
      "# rope-drift: {}\n\n{} sequence(s) of {} tokens; {} layers, {} "
      "heads ({} kv), head_dim {}; {:.1f} s.\n\n",
      title, report.sequences, report.seq_len, report.layers, report.heads, report.kv_heads,
      report.head_dim, report.seconds);
  md +=
      "| mode/policy | mean D (delta1 != delta2) | mean D excl. first | first-token share | "
      "first-token rank | attention on the first key |\n| --- | --- | --- | --- | --- | --- |\n";
  std::map<std::string, const FirstTokenShare*> shares;
  for (const FirstTokenShare& s : report.first_token_share)
    shares[key(s.mode, s.policy)] = &s;
  for (const auto& k : order) {
    const FirstTokenShare* s = shares.count(k) ? shares[k] : nullptr;
    md +=
        fmt::format("| {} | {:.4g} | {:.4g} | {:.3f} | {} | {:.4f} |\n", k, mean_d[k], mean_excl[k],
                    s ? s->share : 0.0, s ? s->rank : 0, s ? s->first_key_attention : 0.0);
  }
  md += "\n| mode/policy | D_logit at each length |\n| --- | --- |\n";
  for (const auto& k : lg_order) {
    std::string cells;
    for (std::size_t i = 0; i < lg[k].x.size(); ++i)
      cells += fmt::format("{}{}: {:.3g}", i ? ", " : "", lg[k].x[i], lg[k].y[i]);
    md += fmt::format("| {} | {} |\n", k, cells);
  }
  md +=
      "\nPlots (SVG and PNG): d_vs_delta, per_token, d_logit. All numbers: report.json.\n\n"
      "## Findings\n\n";
  auto has = [&](const std::string& k) { return mean_d.count(k) > 0 && count[k] > 0; };
  // A row of i + 1 keys attending uniformly gives the first key 1/(i+1): mean H_T / T.
  double uniform = 0.0;
  for (std::int64_t i = 1; i <= report.seq_len; ++i)
    uniform += 1.0 / static_cast<double>(i);
  uniform /= static_cast<double>(std::max<std::int64_t>(report.seq_len, 1));
  for (const std::string policy : {"global", "anchor"}) {
    const std::string f = "fp32/" + policy, b = "hf_bf16/" + policy, e = "exact/" + policy;
    if (has(f) && has(b)) {
      const double ratio = mean_d[f] > 0 ? mean_d[b] / mean_d[f] : 0.0;
      if (policy == "anchor")
        md += fmt::format(
            "- anchor: fp32 D is already {:.3g}: with the first token held at 0 its distance to "
            "every other token changes with delta, which exact arithmetic sees too; hf_bf16 "
            "adds {:.3g} on top of it (D {:.3g}).\n",
            mean_d[f], mean_d[b] - mean_d[f], mean_d[b]);
      else if (mean_d[f] == 0.0)
        md += fmt::format("- {}: fp32 D is exactly 0; hf_bf16 D is {:.3g}.\n", policy, mean_d[b]);
      else
        md += fmt::format("- {}: hf_bf16 D ({:.3g}) is {:.3g}x fp32 D ({:.3g}): {}.\n", policy,
                          mean_d[b], ratio, mean_d[f],
                          ratio >= 10   ? "bf16 RoPE clearly breaks the shift invariance"
                          : ratio > 1.5 ? "bf16 deviates more than fp32, but not by an order of "
                                          "magnitude"
                                        : "bf16 does not deviate measurably more than fp32");
    }
    if (has(b) && has(e)) {
      const double excess = mean_d[b] - (has(f) ? mean_d[f] : 0.0);
      md += fmt::format("- {}: exact RoPE D ({:.3g}) is {} hf_bf16 D ({:.3g}){}.\n", policy,
                        mean_d[e], mean_d[e] < mean_d[b] ? "below" : "not below", mean_d[b],
                        has(f) && excess > 0
                            ? fmt::format(": it removes {:.0f}% of bf16's excess over fp32",
                                          100 * (mean_d[b] - mean_d[e]) / excess)
                            : std::string());
    }
    if (has(b) && shares.count(b)) {
      const FirstTokenShare* s = shares[b];
      const double cut = mean_d[b] > 0 ? 1.0 - mean_excl[b] / mean_d[b] : 0.0;
      md += fmt::format(
          "- {}: in hf_bf16 the first token {} the largest per-token contribution (rank {}, "
          "share {:.1f}%; the largest other key, position {}, has {:.1f}%); D without it is "
          "{:.3g} against {:.3g}, {:.0f}% less: {}.\n",
          policy, s->rank == 1 ? "is" : "is not", s->rank, 100 * s->share, s->largest_other_token,
          100 * s->largest_other_share, mean_excl[b], mean_d[b], 100 * cut,
          cut >= 0.5 ? "much smaller" : "not much smaller");
      const double sink = s->first_key_attention;
      md += fmt::format(
          "- {}: the first key draws {:.2f}% of the attention on average (mean of A_i0 over "
          "layers, heads and rows), {:.2g}x what uniform rows would give ({:.2f}%): {}.\n",
          policy, 100 * sink, uniform > 0 ? sink / uniform : 0.0, 100 * uniform,
          sink >= 20 * uniform
              ? "a strong attention sink, so errors on its scores weigh on every row"
          : sink >= 3 * uniform ? "a weak attention sink"
                                : "no attention sink (under 3x uniform), so errors on its scores "
                                  "weigh little");
    }
    if (lg.count(b) && lg[b].y.size() >= 2) {
      const auto& y = lg[b].y;
      const double growth = y.front() > 0 ? y.back() / y.front() : 0.0;
      md +=
          fmt::format("- {}: hf_bf16 D_logit goes from {:.3g} at length {} to {:.3g} at {}: {}.\n",
                      policy, y.front(), lg[b].x.front(), y.back(), lg[b].x.back(),
                      growth > 1.5          ? fmt::format("it grows {:.2g}x", growth)
                      : growth >= 1.0 / 1.5 ? std::string("flat (within a factor 1.5)")
                                            : fmt::format("it falls {:.2g}x", 1 / growth));
    }
  }
  if (has("hf_bf16/global") && has("hf_bf16/anchor") && has("fp32/global") && has("fp32/anchor")) {
    const double g = mean_d["hf_bf16/global"] - mean_d["fp32/global"];
    const double a = mean_d["hf_bf16/anchor"] - mean_d["fp32/anchor"];
    md += fmt::format(
        "- anchor against global: bf16's excess over fp32 is {:.3g} under anchor and {:.3g} "
        "under global ({}); a shift test moves the anchor's distances, so it bounds the bf16 "
        "excess rather than showing the anchor as a remedy.\n",
        a, g,
        a < g ? fmt::format("{:.0f}% smaller", 100 * (1 - a / g))
              : fmt::format("{:.0f}% larger", 100 * (a / g - 1)));
  }
  files.add("report.md", md);
  files.add("report.json", to_json(report).dump(2) + "\n");
  files.commit();
}

}  // namespace anchorctx::analysis
