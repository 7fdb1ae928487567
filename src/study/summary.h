// Mean and range of the per-seed values of one table cell, and how the report prints it.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace anchorctx::study {

struct Cell {
  std::size_t n = 0;        // finite values
  std::size_t missing = 0;  // non-finite values (a NaN score, a diverged run)
  double mean = 0.0, lo = 0.0, hi = 0.0;
};

// Non-finite values are left out of the numbers and counted in `missing`; n = 0 when none is
// left (mean NaN).
Cell summarize(const std::vector<double>& values);

// "pending" (no value), "n/a" (only non-finite values), "45.0" (n = 1), "45.0 [40.0, 50.0]"
// (n >= 2); with non-finite values left out, how many of how many the numbers are:
// "30.0 (1 of 2)", so that a cell never passes for the mean of seeds it lacks.
std::string format_cell(const Cell& cell, int decimals = 1);

// The mean alone, marked the same way: "pending", "n/a", "0.532", "0.532 (1 of 2)".
std::string format_mean(const Cell& cell, int decimals);

}  // namespace anchorctx::study
