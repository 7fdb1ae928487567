// Metric sinks of a training run: metrics.jsonl (one JSON object per logged step) and
// TensorBoard event files, both written by the project (no TensorFlow, no protobuf library:
// an event file is a TFRecord stream of tiny protobuf messages, encoded here by hand; see
// tensorboard_writer.cpp for the format and the reason).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace anchorctx::train {

// The scalars of one step, by name ("loss", "lr", "grad_norm", "tokens_per_s", ...).
struct StepMetrics {
  std::int64_t step = 0;
  std::map<std::string, double> scalars;
};

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void write(const StepMetrics& metrics) = 0;
  // Pushes what is buffered to the file (called at checkpoints and at the end).
  virtual void flush() = 0;
};

// Appends `{"step": N, "<name>": value, ...}` lines to `path` (created if absent). Non-finite
// values are written as null. `truncate_after_step`: when resuming, lines of steps greater than
// it are dropped first (rewritten atomically), so a resumed run's file has each step once.
class JsonlMetricsSink final : public MetricsSink {
 public:
  explicit JsonlMetricsSink(const std::filesystem::path& path,
                            std::int64_t truncate_after_step = -1);
  ~JsonlMetricsSink() override;
  void write(const StepMetrics& metrics) override;
  void flush() override;

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

// Writes `events.out.tfevents.<unix time>.<host>.<pid>.anchorctx` in `dir` (created if absent):
// a file_version event "brain.Event:2", then one event per write() holding every scalar as a
// simple_value summary tagged "train/<name>". TensorBoard and tensorboard's EventAccumulator
// read it back.
// `restart_step` >= 0 (a resumed run: the first step it will write) adds a SessionLog START
// event at that step after the file_version event. That is how TensorFlow's own writers mark a
// restart: readers then drop the events of earlier files at that step and later (a killed run's
// steps past its last checkpoint), so the resumed steps are not shown beside the dead ones.
class TensorBoardSink final : public MetricsSink {
 public:
  explicit TensorBoardSink(const std::filesystem::path& dir, std::int64_t restart_step = -1);
  ~TensorBoardSink() override;
  void write(const StepMetrics& metrics) override;
  void flush() override;
  const std::filesystem::path& file() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

// CRC-32C (Castagnoli) and TFRecord's masked form ((crc >> 15 | crc << 17) + 0xa282ead8).
std::uint32_t crc32c(const void* data, std::size_t size);
std::uint32_t masked_crc32c(const void* data, std::size_t size);

}  // namespace anchorctx::train
