// The needle heatmap: accuracy per (depth, length) cell, drawn with cairo onto an SVG and an
// image surface (one drawing, two files, as core/line_chart.h does for line charts).
#pragma once

#include <string>
#include <vector>

namespace anchorctx::eval {

struct Heatmap {
  std::string title;
  std::vector<std::string> columns, rows;   // x labels (lengths), y labels (depths)
  std::vector<std::vector<double>> values;  // [row][column] in [0, 100]; NaN: no data
};

struct RenderedHeatmap {
  std::string svg, png;
};

// Throws anchorctx::Error when cairo fails.
RenderedHeatmap render_heatmap(const Heatmap& map);

}  // namespace anchorctx::eval
