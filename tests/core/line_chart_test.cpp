// The cairo line charts of the reports: both files are what they claim, and the PNG shows the
// series (read back through cairo and looked for by colour).
#include "anchorctx/core/line_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include <cairo.h>
#include <gtest/gtest.h>

namespace anchorctx::core {
namespace {

struct Reader {
  const std::string* bytes;
  std::size_t at = 0;
};

cairo_status_t read_bytes(void* closure, unsigned char* data, unsigned int length) {
  auto* r = static_cast<Reader*>(closure);
  if (r->at + length > r->bytes->size()) return CAIRO_STATUS_READ_ERROR;
  std::copy_n(r->bytes->data() + r->at, length, data);
  r->at += length;
  return CAIRO_STATUS_SUCCESS;
}

// Pixels of the PNG within `tolerance` of an RGB colour (0-255 per channel).
int count_colour(const std::string& png, int red, int green, int blue, int tolerance = 12) {
  Reader reader{&png};
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(read_bytes, &reader);
  EXPECT_EQ(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
  int count = 0;
  const int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::uint32_t px;
      std::memcpy(&px, data + y * stride + 4 * x, sizeof px);  // native-endian xRGB
      const int r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
      if (std::abs(r - red) <= tolerance && std::abs(g - green) <= tolerance &&
          std::abs(b - blue) <= tolerance)
        ++count;
    }
  cairo_surface_destroy(s);
  return count;
}

LineChart chart_with(std::vector<ChartSeries> series, AxisScale x, AxisScale y) {
  LineChart c;
  c.title = "test chart";
  c.x_label = "x";
  c.y_label = "y";
  c.x_scale = x;
  c.y_scale = y;
  c.series = std::move(series);
  return c;
}

TEST(LineChart, WritesAnSvgDocumentAndAPngOfTwiceItsSize) {
  ChartSeries s;
  s.name = "a";
  s.x = {1, 2, 3};
  s.y = {1, 4, 9};
  const RenderedChart out = render_chart(chart_with({s}, AxisScale::linear, AxisScale::linear));
  EXPECT_NE(out.svg.find("<svg"), std::string::npos);
  EXPECT_NE(out.svg.find("width=\"760"), std::string::npos);
  ASSERT_GT(out.png.size(), 24u);
  EXPECT_EQ(out.png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t(std::uint8_t(out.png[at])) << 24) |
           (std::uint32_t(std::uint8_t(out.png[at + 1])) << 16) |
           (std::uint32_t(std::uint8_t(out.png[at + 2])) << 8) | std::uint8_t(out.png[at + 3]);
  };
  EXPECT_EQ(be32(16), 1520u);  // IHDR width and height
  EXPECT_EQ(be32(20), 920u);
}

TEST(LineChart, ThePngShowsEachSeriesInItsColour) {
  ChartSeries blue, red;
  blue.name = "blue";
  blue.x = {0, 10};
  blue.y = {1, 100};
  red.name = "red";
  red.color = 1;
  red.dashed = true;
  red.x = {0, 10};
  red.y = {50, 2};
  const RenderedChart both =
      render_chart(chart_with({blue, red}, AxisScale::linear, AxisScale::log));
  const RenderedChart blue_only =
      render_chart(chart_with({blue}, AxisScale::linear, AxisScale::log));
  // The palette's first two colours (tab10 blue and red).
  EXPECT_GT(count_colour(both.png, 31, 120, 181), 500);
  EXPECT_GT(count_colour(both.png, 214, 38, 41), 300);
  EXPECT_GT(count_colour(blue_only.png, 31, 120, 181), 500);
  EXPECT_EQ(count_colour(blue_only.png, 214, 38, 41), 0);
}

TEST(LineChart, PointsALogAxisCannotShowAreLeftOutNotFatal) {
  ChartSeries s;
  s.name = "zeros and worse";
  s.x = {0, 1, 2, 3, 4};
  s.y = {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), 1e-3, 1e-1};
  EXPECT_NO_THROW(render_chart(chart_with({s}, AxisScale::categorical, AxisScale::log)));
  // Nothing a log axis can show: only the legend's sample line is drawn in the colour.
  ChartSeries none = s, some = s;
  none.y = {0.0, 0.0, -1.0, 0.0, 0.0};
  some.y = {1e-3, 1e-2, 1e-3, 1e-2, 1e-1};
  const RenderedChart empty = render_chart(chart_with({none}, AxisScale::log, AxisScale::log));
  const RenderedChart full = render_chart(chart_with({some}, AxisScale::log, AxisScale::log));
  const int legend_only = count_colour(empty.png, 31, 120, 181);
  EXPECT_GT(legend_only, 0);
  EXPECT_LT(legend_only * 3, count_colour(full.png, 31, 120, 181));
}

TEST(LineChart, ManyPointsAreReducedToTheirEnvelopePerColumn) {
  ChartSeries s;
  s.name = "100000 points";
  for (int i = 0; i < 100000; ++i) {
    s.x.push_back(i);
    s.y.push_back(std::sin(0.01 * i) + 2.0);
  }
  const RenderedChart out = render_chart(chart_with({s}, AxisScale::linear, AxisScale::linear));
  // About 2 points per half-unit column of a 526-unit plot, not 100000 path segments.
  EXPECT_LT(out.svg.size(), 200000u);
  EXPECT_GT(count_colour(out.png, 31, 120, 181), 2000);
}

}  // namespace
}  // namespace anchorctx::core
