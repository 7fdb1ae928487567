// Progress: a one-line progress bar on stderr for long runs (bytes, documents, windows, rate,
// ETA). Silent when stderr is not a terminal or when asked to be quiet, so logs and pipes stay
// clean. Redraws at most ten times a second: updating it per document costs a clock read.
#pragma once

#include <chrono>
#include <cstdint>

namespace anchorctx::core {

class Progress {
 public:
  // `total_bytes` 0: unknown (no ETA or percentage).
  Progress(std::uint64_t total_bytes, bool quiet);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress();

  bool enabled() const { return enabled_; }
  // Absolute counts so far.
  void update(std::uint64_t bytes, std::uint64_t documents, std::uint64_t windows);
  // Clears the line (before a summary is printed).
  void finish();

 private:
  void draw();

  bool enabled_ = false;
  bool drawn_ = false;
  std::uint64_t total_ = 0, bytes_ = 0, documents_ = 0, windows_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace anchorctx::core
