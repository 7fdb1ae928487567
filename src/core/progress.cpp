// Progress: a single stderr line rewritten with '\r'.
#include "anchorctx/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace anchorctx::core {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace

Progress::Progress(std::uint64_t total_bytes, bool quiet)
    : enabled_(!quiet && ::isatty(STDERR_FILENO) == 1), total_(total_bytes) {
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  finish();
}

void Progress::update(std::uint64_t bytes, std::uint64_t documents, std::uint64_t windows) {
  if (!enabled_) return;
  bytes_ = bytes;
  documents_ = documents;
  windows_ = windows;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw();
}

void Progress::draw() {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? static_cast<double>(bytes_) / secs : 0.0;
  std::string line;
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(bytes_) / static_cast<double>(total_));
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth);
    line = fmt::format("[{}{}] {:5.1f}% ", std::string(filled, '#'),
                       std::string(kWidth - filled, '.'), 100.0 * frac);
  }
  line += fmt::format("{} | {} docs | {} windows | {}/s", human_bytes(static_cast<double>(bytes_)),
                      documents_, windows_, human_bytes(rate));
  if (total_ > 0 && rate > 0 && bytes_ < total_)
    line += fmt::format(" | ETA {:.0f}s", static_cast<double>(total_ - bytes_) / rate);
  std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stderr, "\r\x1b[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace anchorctx::core
