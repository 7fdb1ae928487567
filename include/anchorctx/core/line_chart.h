// Line charts for the reports (rope-drift's plots, a training run's report.md), drawn once with
// cairo and written both as SVG (cairo's SVG surface) and PNG (its image surface): one drawing,
// two files that show the same thing. In core because both train and analysis draw them and
// neither may depend on the other (DESIGN.md's dependency table). Cairo (Debian's libcairo2) is the
// 2D library made for this; its text goes through fontconfig, so any installed sans-serif font
// (fonts-dejavu-core) will do.
#pragma once

#include <string>
#include <vector>

#include "anchorctx/core/atomic_file.h"

namespace anchorctx::core {

enum class AxisScale {
  linear,
  log,          // values <= 0 are left out (the line breaks there)
  categorical,  // every distinct x value gets one evenly spaced slot, labelled with the value
};

struct ChartSeries {
  std::string name;
  std::vector<double> x, y;
  int color = 0;        // index into the chart palette
  bool dashed = false;  // a second family of series (e.g. a second policy) in the same colour
};

struct LineChart {
  std::string title, x_label, y_label;
  AxisScale x_scale = AxisScale::linear, y_scale = AxisScale::linear;
  std::vector<ChartSeries> series;
  // Draw a marker at every point of series with at most this many points.
  std::size_t markers_up_to = 40;
};

struct RenderedChart {
  std::string svg;  // an SVG document
  std::string png;  // PNG bytes (twice the SVG's nominal size, for high-density screens)
};

// Throws anchorctx::Error when cairo fails.
RenderedChart render_chart(const LineChart& chart);

// Renders `chart` and stages it in `files` as `stem`.svg and `stem`.png (a report's plots are
// written with the report, as one set). Throws anchorctx::Error.
void add_chart(AtomicFileSet& files, const std::string& stem, const LineChart& chart);

}  // namespace anchorctx::core
