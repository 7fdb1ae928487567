// Mean and range of the per-seed values of one table cell, and how the report prints it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace anchorctx::study {

struct Cell {
  std::size_t n = 0;  // finite values
  double mean = 0.0, lo = 0.0, hi = 0.0;
};

// Non-finite values are left out; n = 0 when none is left (mean NaN).
Cell summarize(const std::vector<double>& values);

// "pending" (n = 0), "45.0" (n = 1), "45.0 [40.0, 50.0]" (n >= 2).
std::string format_cell(const Cell& cell, int decimals = 1);

}  // namespace anchorctx::study
