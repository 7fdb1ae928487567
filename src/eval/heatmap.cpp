#include "eval/heatmap.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "anchorctx/core/error.h"

namespace anchorctx::eval {
namespace {

cairo_status_t append(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

constexpr double kCell = 56.0, kLeft = 70.0, kTop = 46.0, kBottom = 50.0, kRight = 20.0;

void draw(cairo_t* cr, const Heatmap& m, double width, double height) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 14);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_move_to(cr, kLeft, 24);
  cairo_show_text(cr, m.title.c_str());
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  const auto centered = [&](const std::string& text, double x, double y) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, text.c_str(), &e);
    cairo_move_to(cr, x - e.width / 2 - e.x_bearing, y - e.height / 2 - e.y_bearing);
    cairo_show_text(cr, text.c_str());
  };
  for (std::size_t r = 0; r < m.rows.size(); ++r)
    for (std::size_t c = 0; c < m.columns.size(); ++c) {
      const double v = m.values[r][c];
      const double x = kLeft + static_cast<double>(c) * kCell;
      const double y = kTop + static_cast<double>(r) * kCell;
      if (std::isnan(v)) {
        cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
      } else {
        // Red (0) through yellow to green (100).
        const double t = std::clamp(v / 100.0, 0.0, 1.0);
        cairo_set_source_rgb(cr, t < 0.5 ? 0.9 : 0.9 - (t - 0.5) * 1.4,
                             t < 0.5 ? 0.25 + t * 1.3 : 0.9 - (t - 0.5) * 0.3, 0.25);
      }
      cairo_rectangle(cr, x + 1, y + 1, kCell - 2, kCell - 2);
      cairo_fill(cr);
      cairo_set_source_rgb(cr, 0, 0, 0);
      centered(std::isnan(v) ? "-" : fmt::format("{:.0f}", v), x + kCell / 2, y + kCell / 2);
    }
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (std::size_t c = 0; c < m.columns.size(); ++c)
    centered(m.columns[c], kLeft + (static_cast<double>(c) + 0.5) * kCell,
             kTop + static_cast<double>(m.rows.size()) * kCell + 14);
  for (std::size_t r = 0; r < m.rows.size(); ++r)
    centered(m.rows[r], kLeft / 2 + 6, kTop + (static_cast<double>(r) + 0.5) * kCell);
  centered("context length (tokens)", width / 2, height - 12);
  cairo_save(cr);
  cairo_translate(cr, 12, kTop + static_cast<double>(m.rows.size()) * kCell / 2);
  cairo_rotate(cr, -M_PI / 2);
  centered("needle depth", 0, 0);
  cairo_restore(cr);
}

void check(cairo_status_t status, const char* what) {
  if (status != CAIRO_STATUS_SUCCESS)
    fail("heatmap: cairo could not {}: {}", what, cairo_status_to_string(status));
}

}  // namespace

RenderedHeatmap render_heatmap(const Heatmap& m) {
  const double width =
      std::max(560.0, kLeft + kRight + kCell * static_cast<double>(m.columns.size()));
  const double height = kTop + kBottom + kCell * static_cast<double>(m.rows.size());
  RenderedHeatmap out;
  {
    cairo_surface_t* s = cairo_svg_surface_create_for_stream(append, &out.svg, width, height);
    cairo_t* cr = cairo_create(s);
    draw(cr, m, width, height);
    check(cairo_status(cr), "draw the SVG");
    cairo_destroy(cr);
    cairo_surface_finish(s);
    check(cairo_surface_status(s), "finish the SVG");
    cairo_surface_destroy(s);
  }
  {
    cairo_surface_t* s = cairo_image_surface_create(
        CAIRO_FORMAT_ARGB32, static_cast<int>(width * 2), static_cast<int>(height * 2));
    cairo_t* cr = cairo_create(s);
    cairo_scale(cr, 2, 2);
    draw(cr, m, width, height);
    check(cairo_status(cr), "draw the PNG");
    cairo_destroy(cr);
    const cairo_status_t st = cairo_surface_write_to_png_stream(s, append, &out.png);
    cairo_surface_destroy(s);
    check(st, "encode the PNG");
  }
  return out;
}

}  // namespace anchorctx::eval
