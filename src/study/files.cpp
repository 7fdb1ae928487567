#include "study/files.h"

#include <algorithm>
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

namespace {

// "stage1_steps" -> "stage1-steps": the option (and TOML key) a user would change.
std::string option_name(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

}  // namespace

std::string settings_difference(const nlohmann::json& before, const nlohmann::json& now) {
  std::string diff;
  for (const auto& [key, value] : now.items())
    if (!before.contains(key) || before.at(key) != value)
      diff += fmt::format("{}{} ({} before, {} now)", diff.empty() ? "" : "; ", option_name(key),
                          before.contains(key) ? before.at(key).dump() : "absent", value.dump());
  return diff;
}

namespace {

// Shape checks of a marker: each names the file and the key path at fault.
struct MarkerCheck {
  const fs::path& path;
  [[noreturn]] void bad(const std::string& where, const std::string& what) const {
    fail("study: {}: {} {}; delete it to redo that part", path.string(), where, what);
  }
  const nlohmann::json& key(const nlohmann::json& j, const std::string& where,
                            const std::string& name) const {
    if (!j.is_object()) bad(where.empty() ? "the file" : where, "is not a JSON object");
    if (!j.contains(name)) bad(where.empty() ? "the file" : where, "has no key '" + name + "'");
    return j.at(name);
  }
  void number_or_null(const nlohmann::json& v, const std::string& where) const {
    if (!v.is_number() && !v.is_null()) bad(where, "is not a number (it is " + kind(v) + ")");
  }
  void object(const nlohmann::json& v, const std::string& where) const {
    if (!v.is_object()) bad(where, "is not a JSON object (it is " + kind(v) + ")");
  }
  void array(const nlohmann::json& v, const std::string& where) const {
    if (!v.is_array()) bad(where, "is not an array (it is " + kind(v) + ")");
  }
  static std::string kind(const nlohmann::json& v) {
    return v.is_null() ? "null" : std::string("a ") + v.type_name();
  }
};

}  // namespace

nlohmann::json read_train_done(const fs::path& path) {
  const nlohmann::json j = read_json(path);
  const MarkerCheck m{path};
  if (!m.key(j, "", "checkpoint").is_string()) m.bad("'checkpoint'", "is not a string");
  const nlohmann::json& loss = m.key(j, "", "loss");
  m.array(loss, "'loss'");
  for (std::size_t i = 0; i < loss.size(); ++i) {
    const std::string where = fmt::format("'loss'[{}]", i);
    if (!loss[i].is_array() || loss[i].size() != 2 || !loss[i][0].is_number() ||
        !loss[i][1].is_number())
      m.bad(where, "is not a [step, loss] pair of numbers");
  }
  m.number_or_null(m.key(j, "", "step_s_median"), "'step_s_median'");
  return j;
}

nlohmann::json read_eval_done(const fs::path& path, const std::vector<std::string>& tasks,
                              const std::vector<std::int64_t>& lengths) {
  const nlohmann::json j = read_json(path);
  const MarkerCheck m{path};
  const nlohmann::json& scores = m.key(j, "", "scores");
  m.object(scores, "'scores'");
  for (const auto& [task, by_length] : scores.items()) {
    m.object(by_length, "'scores'." + task);
    for (const auto& [length, value] : by_length.items())
      m.number_or_null(value, fmt::format("'scores'.{}.{}", task, length));
  }
  for (const std::string& task : tasks)
    for (const std::int64_t length : lengths)
      m.key(scores.contains(task) ? scores.at(task) : nlohmann::json::object(), "'scores'." + task,
            std::to_string(length));
  const nlohmann::json& ppl = m.key(j, "", "ppl");
  m.array(ppl, "'ppl'");
  for (std::size_t i = 0; i < ppl.size(); ++i) {
    const std::string where = fmt::format("'ppl'[{}]", i);
    if (!m.key(ppl[i], where, "length").is_number_integer())
      m.bad(where + ".length", "is not an integer");
    m.number_or_null(m.key(ppl[i], where, "loss"), where + ".loss");
    const nlohmann::json& buckets = m.key(ppl[i], where, "buckets");
    m.array(buckets, where + ".buckets");
    for (std::size_t k = 0; k < buckets.size(); ++k) {
      const nlohmann::json& b = buckets[k];
      const std::string at = fmt::format("{}.buckets[{}]", where, k);
      if (!b.is_array() || b.size() != 3 || !b[0].is_number_integer() || !b[1].is_number_integer())
        m.bad(at, "is not a [begin, end, loss] triple");
      m.number_or_null(b[2], at + "[2]");
    }
  }
  return j;
}

nlohmann::json read_drift_done(const fs::path& path) {
  const nlohmann::json j = read_json(path);
  const MarkerCheck m{path};
  for (const char* key : {"D", "D_excl_first", "first_token_share"}) {
    const nlohmann::json& by_mode = m.key(j, "", key);
    m.object(by_mode, fmt::format("'{}'", key));
    for (const auto& [mode, value] : by_mode.items())
      m.number_or_null(value, fmt::format("'{}'.{}", key, mode));
  }
  return j;
}

nlohmann::json read_failed_marker(const fs::path& path) {
  const nlohmann::json j = read_json(path);
  const MarkerCheck m{path};
  if (!m.key(j, "", "reason").is_string()) m.bad("'reason'", "is not a string");
  return j;
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
