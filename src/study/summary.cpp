#include "study/summary.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace anchorctx::study {

Cell summarize(const std::vector<double>& values) {
  Cell c;
  double sum = 0.0;
  for (const double v : values) {
    if (!std::isfinite(v)) continue;
    c.lo = c.n == 0 ? v : std::min(c.lo, v);
    c.hi = c.n == 0 ? v : std::max(c.hi, v);
    sum += v;
    ++c.n;
  }
  c.mean = c.n > 0 ? sum / static_cast<double>(c.n) : std::nan("");
  return c;
}

std::string format_cell(const Cell& c, int decimals) {
  if (c.n == 0) return "pending";
  if (c.n == 1) return fmt::format("{:.{}f}", c.mean, decimals);
  return fmt::format("{:.{}f} [{:.{}f}, {:.{}f}]", c.mean, decimals, c.lo, decimals, c.hi,
                     decimals);
}

}  // namespace anchorctx::study
