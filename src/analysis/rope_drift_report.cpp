// rope-drift: the JSON object, the SVG plots and report.md (docs/rope-drift.md).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/analysis/rope_drift.h"
#include "anchorctx/core/error.h"

namespace anchorctx::analysis {

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
                                        {"largest_other_share", s.largest_other_share}});
  out["seconds"] = report.seconds;
  return out;
}

namespace {

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// A hand-written SVG line chart; log axes map value v to log10(v) (non-positive values are
// left out of a log axis).
std::string line_chart(const std::string& title, const std::string& xlabel,
                       const std::string& ylabel, const std::vector<Series>& series, bool logx,
                       bool logy) {
  const double W = 720, H = 440, left = 80, right = 170, top = 40, bottom = 60;
  auto tx = [&](double v) { return logx ? std::log10(v) : v; };
  auto ty = [&](double v) { return logy ? std::log10(v) : v; };
  auto ok = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!logx || x > 0) && (!logy || y > 0);
  };
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const Series& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (ok(s.x[i], s.y[i])) {
        x0 = std::min(x0, tx(s.x[i]));
        x1 = std::max(x1, tx(s.x[i]));
        y0 = std::min(y0, ty(s.y[i]));
        y1 = std::max(y1, ty(s.y[i]));
      }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  auto px = [&](double v) { return left + (tx(v) - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double v) { return H - bottom - (ty(v) - y0) / (y1 - y0) * (H - top - bottom); };
  auto tick = [](double v, bool log) {
    return log ? fmt::format("1e{:.1f}", v) : fmt::format("{:.3g}", v);
  };
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                 "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n",
      W, H, left, title);
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left,
      top, W - left - right, H - top - bottom);
  for (int k = 0; k <= 4; ++k) {
    const double xv = x0 + (x1 - x0) * k / 4, yv = y0 + (y1 - y0) * k / 4;
    const double xp = left + (W - left - right) * k / 4,
                 yp = H - bottom - (H - top - bottom) * k / 4;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", xp,
                       H - bottom + 16, tick(xv, logx));
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 4, yp + 4,
                       tick(yv, logy));
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n",
                     (left + W - right) / 2, H - 20, xlabel, logx ? " (log)" : "");
  svg += fmt::format(
      "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" "
      "text-anchor=\"middle\">{}{}</text>\n",
      (top + H - bottom) / 2, (top + H - bottom) / 2, ylabel, logy ? " (log)" : "");
  for (std::size_t s = 0; s < series.size(); ++s) {
    const char* color = colors[s % 8];
    std::string points;
    for (std::size_t i = 0; i < series[s].x.size(); ++i)
      if (ok(series[s].x[i], series[s].y[i]))
        points += fmt::format("{:.1f},{:.1f} ", px(series[s].x[i]), py(series[s].y[i]));
    svg +=
        fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
                    color, points);
    const double ly = top + 14 + 18 * static_cast<double>(s);
    svg += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>"
        "<text x=\"{}\" y=\"{}\">{}</text>\n",
        W - right + 10, ly, W - right + 30, ly, color, W - right + 34, ly + 4, series[s].name);
  }
  return svg + "</svg>\n";
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  require(static_cast<bool>(out), "rope-drift: cannot write {}", path.string());
}

std::string key(const std::string& mode, PositionPolicy policy) {
  return mode + "/" + std::string(to_string(policy));
}

}  // namespace

void write_report(const RopeDriftReport& report, const std::string& title,
                  const std::string& dir_name) {
  const std::filesystem::path dir(dir_name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require(!ec, "rope-drift: cannot create {}: {}", dir_name, ec.message());
  write_file(dir / "report.json", to_json(report).dump(2) + "\n");

  // Per (mode, policy): mean D over delta1 != delta2, and the curves.
  std::map<std::string, Series> d_curves;
  std::vector<std::string> order;
  std::map<std::string, double> mean_d, mean_excl;
  std::map<std::string, int> count;
  for (const DriftResult& r : report.results) {
    const std::string k = key(r.mode, r.policy);
    if (!d_curves.count(k)) {
      order.push_back(k);
      d_curves[k].name = k;
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
  std::vector<Series> d_series;
  for (const auto& k : order)
    d_series.push_back(d_curves[k]);
  write_file(
      dir / "d_vs_delta.svg",
      line_chart(fmt::format("D(delta1, delta2={}), T={}",
                             report.results.empty() ? 0 : report.results[0].delta2, report.seq_len),
                 "delta1", "D", d_series, false, true));

  // Per-token contribution, summed over delta1, global policy (or the first policy present).
  std::vector<Series> tok_series;
  std::map<std::string, Series> tok;
  std::vector<std::string> tok_order;
  for (const DriftResult& r : report.results) {
    if (r.policy != report.results[0].policy) continue;
    const std::string k = key(r.mode, r.policy);
    if (!tok.count(k)) {
      tok_order.push_back(k);
      tok[k].name = k;
      tok[k].y.assign(r.per_token.size(), 0.0);
      for (std::size_t j = 0; j < r.per_token.size(); ++j)
        tok[k].x.push_back(static_cast<double>(j + 1));
    }
    for (std::size_t j = 0; j < r.per_token.size(); ++j)
      tok[k].y[j] += r.per_token[j];
  }
  for (const auto& k : tok_order)
    tok_series.push_back(tok[k]);
  write_file(dir / "per_token.svg",
             line_chart("per-key contribution c_j, summed over delta1", "key position j + 1", "c_j",
                        tok_series, true, true));

  std::map<std::string, Series> lg;
  std::vector<std::string> lg_order;
  for (const LogitGrowth& g : report.logit_growth) {
    const std::string k = key(g.mode, g.policy);
    if (!lg.count(k)) {
      lg_order.push_back(k);
      lg[k].name = k;
    }
    lg[k].x.push_back(static_cast<double>(g.length));
    lg[k].y.push_back(g.D_logit);
  }
  std::vector<Series> lg_series;
  for (const auto& k : lg_order)
    lg_series.push_back(lg[k]);
  write_file(dir / "d_logit.svg", line_chart("D_logit on the first key against length", "length T",
                                             "D_logit", lg_series, true, true));

  // report.md: the numbers, then sentences chosen from them.
  std::string md = fmt::format(
      "# rope-drift: {}\n\n{} sequence(s) of {} tokens; {} layers, {} "
      "heads ({} kv), head_dim {}; {:.1f} s.\n\n",
      title, report.sequences, report.seq_len, report.layers, report.heads, report.kv_heads,
      report.head_dim, report.seconds);
  md +=
      "| mode/policy | mean D (delta1 != delta2) | mean D excl. first | first-token share | "
      "first-token rank |\n| --- | --- | --- | --- | --- |\n";
  std::map<std::string, const FirstTokenShare*> shares;
  for (const FirstTokenShare& s : report.first_token_share)
    shares[key(s.mode, s.policy)] = &s;
  for (const auto& k : order) {
    const FirstTokenShare* s = shares.count(k) ? shares[k] : nullptr;
    md += fmt::format("| {} | {:.4g} | {:.4g} | {:.3f} | {} |\n", k, mean_d[k], mean_excl[k],
                      s ? s->share : 0.0, s ? s->rank : 0);
  }
  md += "\n| mode/policy | D_logit at each length |\n| --- | --- |\n";
  for (const auto& k : lg_order) {
    std::string cells;
    for (std::size_t i = 0; i < lg[k].x.size(); ++i)
      cells += fmt::format("{}{}: {:.3g}", i ? ", " : "", lg[k].x[i], lg[k].y[i]);
    md += fmt::format("| {} | {} |\n", k, cells);
  }
  md +=
      "\nPlots: d_vs_delta.svg, per_token.svg, d_logit.svg. All numbers: report.json.\n\n"
      "## Findings\n\n";
  auto has = [&](const std::string& k) { return mean_d.count(k) > 0 && count[k] > 0; };
  for (const std::string policy : {"global", "anchor"}) {
    const std::string f = "fp32/" + policy, b = "hf_bf16/" + policy, e = "exact/" + policy;
    if (has(f) && has(b)) {
      const double ratio = mean_d[f] > 0 ? mean_d[b] / mean_d[f] : 0.0;
      if (mean_d[f] == 0.0)
        md += fmt::format("- {}: fp32 D is exactly 0; hf_bf16 D is {:.3g}.\n", policy, mean_d[b]);
      else
        md += fmt::format("- {}: hf_bf16 D ({:.3g}) is {:.3g}x fp32 D ({:.3g}): {}.\n", policy,
                          mean_d[b], ratio, mean_d[f],
                          ratio >= 10   ? "bf16 RoPE clearly breaks the shift invariance"
                          : ratio > 1.5 ? "bf16 deviates more than fp32, but not by an order of "
                                          "magnitude"
                                        : "bf16 does not deviate measurably more than fp32");
    }
    if (has(b) && has(e))
      md += fmt::format("- {}: exact RoPE D ({:.3g}) is {} hf_bf16 D ({:.3g}).\n", policy,
                        mean_d[e], mean_d[e] < mean_d[b] ? "below" : "not below", mean_d[b]);
    if (has(b) && shares.count(b)) {
      const FirstTokenShare* s = shares[b];
      md += fmt::format(
          "- {}: in hf_bf16 the first token {} the largest per-token contribution (rank {}, "
          "share {:.1f}%; the largest other key, position {}, has {:.1f}%); D without it is "
          "{:.3g} against {:.3g}.\n",
          policy, s->rank == 1 ? "is" : "is not", s->rank, 100 * s->share, s->largest_other_token,
          100 * s->largest_other_share, mean_excl[b], mean_d[b]);
    }
    if (lg.count(b) && lg[b].y.size() >= 2) {
      const auto& y = lg[b].y;
      const bool grows = y.back() > y.front();
      md += fmt::format(
          "- {}: hf_bf16 D_logit goes from {:.3g} at length {} to {:.3g} at {}: it "
          "{} with length.\n",
          policy, y.front(), lg[b].x.front(), y.back(), lg[b].x.back(),
          grows ? "grows" : "does not grow");
    }
  }
  if (has("hf_bf16/global") && has("hf_bf16/anchor"))
    md += fmt::format(
        "- the anchor policy's hf_bf16 D ({:.3g}) is {} the global policy's ({:.3g}); under "
        "anchor even exact arithmetic changes the scores against the first token (its distance "
        "changes with delta), so read it against anchor's fp32 D{}.\n",
        mean_d["hf_bf16/anchor"],
        mean_d["hf_bf16/anchor"] < mean_d["hf_bf16/global"] ? "below" : "not below",
        mean_d["hf_bf16/global"],
        has("fp32/anchor") ? fmt::format(" ({:.3g})", mean_d["fp32/anchor"]) : std::string());
  write_file(dir / "report.md", md);
}

}  // namespace anchorctx::analysis
