#include "study/summary.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace anchorctx::study {

Cell summarize(const std::vector<double>& values) {
  Cell c;
  double sum = 0.0;
  for (const double v : values) {
    if (!std::isfinite(v)) {
      ++c.missing;
      continue;
    }
    c.lo = c.n == 0 ? v : std::min(c.lo, v);
    c.hi = c.n == 0 ? v : std::max(c.hi, v);
    sum += v;
    ++c.n;
  }
  c.mean = c.n > 0 ? sum / static_cast<double>(c.n) : std::nan("");
  return c;
}

namespace {

std::string of_how_many(const Cell& c) {
  return c.missing == 0 ? std::string() : fmt::format(" ({} of {})", c.n, c.n + c.missing);
}

}  // namespace

std::string format_cell(const Cell& c, int decimals) {
  if (c.n == 0) return c.missing == 0 ? "pending" : "n/a";
  if (c.n == 1) return fmt::format("{:.{}f}", c.mean, decimals) + of_how_many(c);
  return fmt::format("{:.{}f} [{:.{}f}, {:.{}f}]", c.mean, decimals, c.lo, decimals, c.hi,
                     decimals) +
         of_how_many(c);
}

std::string format_mean(const Cell& c, int decimals) {
  if (c.n == 0) return c.missing == 0 ? "pending" : "n/a";
  return fmt::format("{:.{}f}", c.mean, decimals) + of_how_many(c);
}

}  // namespace anchorctx::study
