// metrics.jsonl (see metrics.h): one JSON object per logged step, "step" first, then the scalars
// by name, doubles written by nlohmann::json in their shortest round-trip form, non-finite values
// as null (JSON has no NaN or infinity).
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/train/metrics.h"

namespace anchorctx::train {
namespace {

namespace fs = std::filesystem;

// Keeps the lines of `path` whose "step" is at most `last_step`, rewriting the file atomically.
// A line that does not parse (the torn last line of a killed run) is dropped as well, and a last
// line without its newline gets one; the file is left alone when nothing changes.
void truncate_steps(const fs::path& path, std::int64_t last_step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;  // nothing to keep
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const auto it = j.is_object() ? j.find("step") : j.end();
    if (j.is_object() && it != j.end() && it->is_number_integer() &&
        it->get<std::int64_t>() <= last_step) {
      kept += line;
      kept += '\n';
    }
  }
  require(in.eof(), "{}: read error", path.string());
  if (kept.size() != fs::file_size(path)) core::write_file_atomic(path, kept);
}

}  // namespace

JsonlMetricsSink::JsonlMetricsSink(const fs::path& path, std::int64_t truncate_after_step)
    : path_(path) {
  if (!path.parent_path().empty()) fs::create_directories(path.parent_path());
  if (truncate_after_step >= 0) truncate_steps(path, truncate_after_step);
  file_ = std::fopen(path.c_str(), "ab");
  if (file_ == nullptr)
    fail("{}: cannot open for appending: {}", path.string(), std::strerror(errno));
}

JsonlMetricsSink::~JsonlMetricsSink() {
  if (file_ != nullptr) std::fclose(file_);
}

void JsonlMetricsSink::write(const StepMetrics& metrics) {
  nlohmann::ordered_json line;
  line["step"] = metrics.step;
  for (const auto& [name, value] : metrics.scalars) {
    require(name != "step", "{}: a scalar may not be named 'step'", path_.string());
    if (std::isfinite(value))
      line[name] = value;
    else
      line[name] = nullptr;
  }
  const std::string text = line.dump() + "\n";
  if (std::fwrite(text.data(), 1, text.size(), file_) != text.size())
    fail("{}: write failed at step {}: {}", path_.string(), metrics.step, std::strerror(errno));
}

void JsonlMetricsSink::flush() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    fail("{}: flush failed: {}", path_.string(), std::strerror(errno));
}

}  // namespace anchorctx::train
