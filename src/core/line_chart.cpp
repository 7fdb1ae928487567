// Line charts with cairo (line_chart.h): layout, axes with readable ticks, series, legend.
#include "anchorctx/core/line_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <cairo-svg.h>
#include <cairo.h>
#include <fmt/format.h>

#include "anchorctx/core/error.h"

namespace anchorctx::core {
namespace {

constexpr double kWidth = 760, kHeight = 460;
constexpr double kLeft = 84, kRight = 150, kTop = 44, kBottom = 62;  // plot area margins
constexpr double kPngScale = 2.0;

struct Rgb {
  double r, g, b;
};
// Distinguishable colours (the tab10 hues).
constexpr Rgb kPalette[] = {{0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17},
                            {1.00, 0.50, 0.05}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29},
                            {0.89, 0.47, 0.76}, {0.09, 0.75, 0.81}};

struct Tick {
  double at;  // axis coordinate (log10 of the value on a log axis, the slot on a categorical one)
  std::string mantissa, exponent;  // label; a non-empty exponent is drawn raised ("10" + "-3")
};

// One axis: maps values to [0, 1] and lists its ticks.
class Axis {
 public:
  Axis(AxisScale scale, const std::vector<double>& values) : scale_(scale) {
    if (scale_ == AxisScale::categorical) {
      for (const double v : values)
        if (std::isfinite(v)) categories_.push_back(v);
      std::sort(categories_.begin(), categories_.end());
      categories_.erase(std::unique(categories_.begin(), categories_.end()), categories_.end());
      lo_ = -0.5;
      hi_ = static_cast<double>(std::max<std::size_t>(categories_.size(), 1)) - 0.5;
      return;
    }
    lo_ = std::numeric_limits<double>::infinity();
    hi_ = -lo_;
    for (const double v : values)
      if (usable(v)) {
        lo_ = std::min(lo_, coordinate(v));
        hi_ = std::max(hi_, coordinate(v));
      }
    if (!std::isfinite(lo_)) lo_ = 0, hi_ = 1;
    if (hi_ - lo_ < 1e-12) {  // one value: give it room
      const double pad = scale_ == AxisScale::log ? 0.5 : std::max(std::abs(lo_) * 0.1, 0.5);
      lo_ -= pad;
      hi_ += pad;
    }
    const double pad = 0.04 * (hi_ - lo_);
    lo_ -= pad;
    hi_ += pad;
  }

  bool usable(double v) const { return std::isfinite(v) && (scale_ != AxisScale::log || v > 0.0); }
  // Position in [0, 1] (before the plot area's size is applied).
  double place(double v) const { return (coordinate(v) - lo_) / (hi_ - lo_); }
  double place_coordinate(double c) const { return (c - lo_) / (hi_ - lo_); }

  std::vector<Tick> ticks() const {
    std::vector<Tick> out;
    if (scale_ == AxisScale::categorical) {
      // Label every slot, or every k-th when there are many.
      const std::size_t every = categories_.size() > 24 ? (categories_.size() + 23) / 24 : 1;
      for (std::size_t i = 0; i < categories_.size(); i += every)
        out.push_back({static_cast<double>(i), fmt::format("{:g}", categories_[i]), ""});
      return out;
    }
    if (scale_ == AxisScale::log) {
      const int first = static_cast<int>(std::ceil(lo_ - 1e-9));
      const int last = static_cast<int>(std::floor(hi_ + 1e-9));
      const int decades = last - first + 1;
      const int every = decades > 8 ? (decades + 7) / 8 : 1;
      for (int e = first; e <= last; e += every)
        out.push_back({static_cast<double>(e), "10", fmt::format("{}", e)});
      if (decades < 2)  // too few decades inside the range: add 2x and 5x
        for (int e = first - 1; e <= last; ++e)
          for (const double m : {2.0, 5.0}) {
            const double c = e + std::log10(m);
            if (c >= lo_ && c <= hi_)
              out.push_back({c, fmt::format("{:g}", m * std::pow(10.0, e)), ""});
          }
      return out;
    }
    // Linear: steps of 1, 2 or 5 times a power of ten, about five of them.
    const double raw = (hi_ - lo_) / 5.0;
    const double power = std::pow(10.0, std::floor(std::log10(raw)));
    double step = power;
    for (const double m : {1.0, 2.0, 5.0, 10.0})
      if (m * power >= raw) {
        step = m * power;
        break;
      }
    for (double v = std::ceil(lo_ / step) * step; v <= hi_ + 1e-9 * step; v += step)
      out.push_back({v, fmt::format("{:g}", std::abs(v) < 1e-9 * step ? 0.0 : v), ""});
    return out;
  }

 private:
  double coordinate(double v) const {
    if (scale_ == AxisScale::log) return std::log10(v);
    if (scale_ == AxisScale::categorical)
      return static_cast<double>(std::lower_bound(categories_.begin(), categories_.end(), v) -
                                 categories_.begin());
    return v;
  }

  AxisScale scale_;
  std::vector<double> categories_;
  double lo_ = 0, hi_ = 1;
};

struct Point {
  double x, y;
};

// The series in device units, as runs of points the axes can show (a point they cannot show
// ends a run). Within a run, points that fall into the same half-unit column (a pixel of the
// PNG) are reduced to the column's lowest and highest point, in their order: the same drawing
// to the eye, and a 4096-point series does not make a 4096-segment SVG path.
template <class Px, class Py>
std::vector<std::vector<Point>> visible_runs(const ChartSeries& s, const Axis& xa, const Axis& ya,
                                             Px px, Py py) {
  std::vector<std::vector<Point>> runs;
  bool pen_down = false;
  double column = std::numeric_limits<double>::quiet_NaN();
  std::size_t column_start = 0;  // index in the current run of the column's first point
  for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
    if (!xa.usable(s.x[i]) || !ya.usable(s.y[i])) {
      pen_down = false;
      continue;
    }
    const Point p{px(s.x[i]), py(s.y[i])};
    if (!pen_down) {
      runs.emplace_back();
      column = std::numeric_limits<double>::quiet_NaN();
    }
    pen_down = true;
    std::vector<Point>& run = runs.back();
    const double c = std::floor(p.x * 2.0);
    if (c != column) {
      column = c;
      column_start = run.size();
      run.push_back(p);
      continue;
    }
    // Same column: keep at most two points, the lowest and the highest, in their order.
    if (run.size() - column_start == 1) {
      run.push_back(p);
      continue;
    }
    // A new extreme replaces the kept point on its side; the other extreme stays, first.
    Point& first = run[column_start];
    Point& second = run[column_start + 1];
    const Point low = first.y <= second.y ? first : second;
    const Point high = first.y <= second.y ? second : first;
    if (p.y < low.y || p.y > high.y) {
      first = p.y < low.y ? high : low;
      second = p;
    }
  }
  return runs;
}

// Text at (x, y) (baseline), aligned by `align` (0 left, 0.5 centre, 1 right) of its width.
void draw_text(cairo_t* cr, double x, double y, const std::string& text, double size,
               double align) {
  cairo_set_font_size(cr, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text.c_str(), &ext);
  cairo_move_to(cr, x - align * ext.x_advance, y);
  cairo_show_text(cr, text.c_str());
}

double text_width(cairo_t* cr, const std::string& text, double size) {
  cairo_set_font_size(cr, size);
  cairo_text_extents_t ext;
  cairo_text_extents(cr, text.c_str(), &ext);
  return ext.x_advance;
}

// A tick label, with a raised exponent when there is one.
void draw_tick_label(cairo_t* cr, double x, double y, const Tick& tick, double align, double size) {
  const double small = size * 0.75;
  const double width = text_width(cr, tick.mantissa, size) +
                       (tick.exponent.empty() ? 0.0 : text_width(cr, tick.exponent, small));
  const double x0 = x - align * width;
  draw_text(cr, x0, y, tick.mantissa, size, 0.0);
  if (!tick.exponent.empty())
    draw_text(cr, x0 + text_width(cr, tick.mantissa, size), y - 5, tick.exponent, small, 0.0);
}

void draw(cairo_t* cr, const LineChart& chart) {
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  std::vector<double> xs, ys;
  for (const ChartSeries& s : chart.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  const Axis xa(chart.x_scale, xs), ya(chart.y_scale, ys);
  auto px = [&](double v) { return kLeft + xa.place(v) * plot_w; };
  auto py = [&](double v) { return kTop + (1.0 - ya.place(v)) * plot_h; };

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // Grid and tick labels.
  cairo_set_line_width(cr, 1.0);
  for (const Tick& t : xa.ticks()) {
    const double x = kLeft + xa.place_coordinate(t.at) * plot_w;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, x, kTop);
    cairo_line_to(cr, x, kTop + plot_h);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    // Slots can be narrow: their labels are a size smaller.
    draw_tick_label(cr, x, kTop + plot_h + 16, t, 0.5,
                    chart.x_scale == AxisScale::categorical ? 10 : 11);
  }
  for (const Tick& t : ya.ticks()) {
    const double y = kTop + (1.0 - ya.place_coordinate(t.at)) * plot_h;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, kLeft, y);
    cairo_line_to(cr, kLeft + plot_w, y);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_tick_label(cr, kLeft - 6, y + 4, t, 1.0, 11);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, kLeft, kTop, plot_w, plot_h);
  cairo_stroke(cr);

  // Title and axis labels.
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  draw_text(cr, kLeft, 26, chart.title, 15, 0.0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  const auto scale_note = [](AxisScale s) { return s == AxisScale::log ? " (log scale)" : ""; };
  draw_text(cr, kLeft + plot_w / 2, kHeight - 18, chart.x_label + scale_note(chart.x_scale), 12,
            0.5);
  cairo_save(cr);
  cairo_translate(cr, 20, kTop + plot_h / 2);
  cairo_rotate(cr, -M_PI / 2);
  draw_text(cr, 0, 0, chart.y_label + scale_note(chart.y_scale), 12, 0.5);
  cairo_restore(cr);

  // Series, clipped to the plot area; a point a log axis cannot show breaks the line.
  const double dash[] = {6.0, 4.0};
  for (std::size_t si = 0; si < chart.series.size(); ++si) {
    const ChartSeries& s = chart.series[si];
    const Rgb c = kPalette[static_cast<std::size_t>(s.color) % std::size(kPalette)];
    cairo_save(cr);
    cairo_rectangle(cr, kLeft, kTop, plot_w, plot_h);
    cairo_clip(cr);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 1.6);
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0.0);
    for (const auto& run : visible_runs(s, xa, ya, px, py)) {
      cairo_move_to(cr, run.front().x, run.front().y);
      for (std::size_t i = 1; i < run.size(); ++i)
        cairo_line_to(cr, run[i].x, run[i].y);
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0.0);
    if (s.x.size() <= chart.markers_up_to)
      for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
        if (xa.usable(s.x[i]) && ya.usable(s.y[i])) {
          cairo_new_sub_path(cr);
          cairo_arc(cr, px(s.x[i]), py(s.y[i]), 2.6, 0, 2 * M_PI);
          if (s.dashed) {
            cairo_stroke(cr);
          } else {
            cairo_fill(cr);
          }
        }
    cairo_restore(cr);

    // Legend entry.
    const double ly = kTop + 10 + 18 * static_cast<double>(si);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 2.0);
    cairo_set_dash(cr, dash, s.dashed ? 2 : 0, 0.0);
    cairo_move_to(cr, kWidth - kRight + 12, ly);
    cairo_line_to(cr, kWidth - kRight + 36, ly);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0.0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    draw_text(cr, kWidth - kRight + 42, ly + 4, s.name, 11, 0.0);
  }
}

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

void check(cairo_status_t status, const char* what) {
  require(status == CAIRO_STATUS_SUCCESS, "chart: cairo failed to {}: {}", what,
          cairo_status_to_string(status));
}

}  // namespace

RenderedChart render_chart(const LineChart& chart) {
  RenderedChart out;
  {
    Surface surface(cairo_svg_surface_create_for_stream(append, &out.svg, kWidth, kHeight));
    check(cairo_surface_status(surface.get()), "create the SVG surface");
    {
      Context cr(cairo_create(surface.get()));
      draw(cr.get(), chart);
      check(cairo_status(cr.get()), "draw the SVG chart");
    }
    cairo_surface_finish(surface.get());  // flushes the document into out.svg
    check(cairo_surface_status(surface.get()), "write the SVG chart");
  }
  {
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24,
                                               static_cast<int>(kWidth * kPngScale),
                                               static_cast<int>(kHeight * kPngScale)));
    check(cairo_surface_status(surface.get()), "create the PNG surface");
    {
      Context cr(cairo_create(surface.get()));
      cairo_scale(cr.get(), kPngScale, kPngScale);
      draw(cr.get(), chart);
      check(cairo_status(cr.get()), "draw the PNG chart");
    }
    check(cairo_surface_write_to_png_stream(surface.get(), append, &out.png), "encode the PNG");
  }
  return out;
}

void add_chart(AtomicFileSet& files, const std::string& stem, const LineChart& chart) {
  const RenderedChart rendered = render_chart(chart);
  files.add(stem + ".svg", rendered.svg);
  files.add(stem + ".png", rendered.png);
}

}  // namespace anchorctx::core
