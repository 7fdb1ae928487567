#include "study/files.h"

#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/rope/positions.h"

namespace anchorctx::study {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& path) {
  // A FIFO or folder in its place is named, not waited on; a NUL byte or nesting no study file
  // has is refused (core::read_json_file).
  try {
    return core::read_json_file(path, "a study file");
  } catch (const Error& e) {
    fail("study: {}; delete it to redo that part", e.what());
  }
}

namespace {

// `path` relative to `study` when it lies inside it, else empty (both made absolute first).
fs::path inside_study(const fs::path& study, const fs::path& path) {
  const fs::path rel = fs::absolute(path).lexically_normal().lexically_relative(
      fs::absolute(study).lexically_normal());
  if (rel.empty() || rel == "." || *rel.begin() == "..") return {};
  return rel;
}

}  // namespace

std::string recorded_path(const fs::path& study, const fs::path& inside) {
  const fs::path rel = inside_study(study, inside);
  require(!rel.empty(), "study: {} is not inside the study folder {}", inside.string(),
          study.string());
  return rel.generic_string();
}

fs::path recorded_folder(const fs::path& study, const fs::path& marker, const char* key) {
  const nlohmann::json j = read_json(marker);
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_string())
    fail("study: {}: no \"{}\" path; delete it to redo that part", marker.string(), key);
  const fs::path recorded = j.at(key).get<std::string>();
  std::error_code ec;
  if (!recorded.is_absolute() && !inside_study(study, study / recorded).empty() &&
      fs::is_directory(study / recorded, ec))
    return study / recorded;
  // An older marker's path, relative to where the study ran: only a folder of this study.
  if (!inside_study(study, recorded).empty() && fs::is_directory(recorded, ec)) return recorded;
  fail(
      "study: {} records '{}', which is no folder of the study {}; delete the marker to redo "
      "that part",
      marker.string(), recorded.string(), study.string());
}

nlohmann::json recorded_settings(const fs::path& study_json) {
  nlohmann::json config = read_json(study_json).at("config");
  for (const auto& [key, value] : {std::pair{"bf16_compute", "emulated"}})
    if (!config.contains(key)) config[key] = value;
  return config;
}

void write_json(const fs::path& path, const nlohmann::json& value) {
  core::write_file_atomic(path, value.dump(1) + "\n");
}

nlohmann::json train_summary(const fs::path& run_dir, const fs::path& checkpoint) {
  const fs::path metrics = run_dir / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in) fail("study: cannot read {}", metrics.string());
  nlohmann::json steps = nlohmann::json::array();
  std::vector<double> step_s;
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      fail("study: {}:{}: not a JSON line", metrics.string(), number);
    }
    if (!j.contains("step") || !j.contains("loss") || j.at("loss").is_null()) continue;
    const std::int64_t step = j.at("step").get<std::int64_t>();
    const double ms = j.value("step_ms", 0.0);
    steps.push_back({step, j.at("loss").get<double>()});
    if (step > 1 && ms > 0) step_s.push_back(ms / 1000.0);
  }
  return {{"checkpoint", checkpoint.string()},
          {"loss", steps},
          {"step_s_median",
           step_s.empty() ? nlohmann::json(nullptr) : nlohmann::json(core::median(step_s))}};
}

nlohmann::json eval_summary(const eval::EvalReport& report) {
  nlohmann::json scores = nlohmann::json::object();
  for (const eval::NiahCell& cell : report.niah)
    scores[cell.task][std::to_string(cell.length)] = cell.mean();
  nlohmann::json ppl = nlohmann::json::array();
  for (const eval::PplResult& p : report.ppl) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const eval::PplBucket& b : p.buckets)
      buckets.push_back({b.begin, b.end, b.tally.mean()});
    ppl.push_back({{"length", p.length}, {"loss", p.total.mean()}, {"buckets", buckets}});
  }
  return {{"scores", scores}, {"ppl", ppl}, {"seconds", report.seconds}};
}

nlohmann::json drift_summary(const analysis::RopeDriftReport& report) {
  require(!report.results.empty(), "study: the RoPE drift measured nothing");
  // Mean over the delta1 values of each mode (the results are per mode, policy, delta1).
  std::map<std::string, std::pair<double, double>> sums;
  std::map<std::string, int> counts;
  for (const analysis::DriftResult& r : report.results) {
    require(r.policy == rope::PositionPolicy::global,
            "study: the RoPE drift is summarised for the global policy only");
    sums[r.mode].first += r.D;
    sums[r.mode].second += r.D_excl_first;
    ++counts[r.mode];
  }
  nlohmann::json d = nlohmann::json::object(), d_excl = nlohmann::json::object(),
                 share = nlohmann::json::object();
  for (const auto& [mode, sum] : sums) {
    d[mode] = sum.first / counts[mode];
    d_excl[mode] = sum.second / counts[mode];
  }
  for (const analysis::FirstTokenShare& f : report.first_token_share)
    share[f.mode] = f.share;
  return {{"seq_len", report.seq_len}, {"policy", "global"},         {"D", d},
          {"D_excl_first", d_excl},    {"first_token_share", share}, {"seconds", report.seconds}};
}

}  // namespace anchorctx::study
