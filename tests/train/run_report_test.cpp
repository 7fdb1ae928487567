// report.md of a run folder (train/run_report.h): the plots are the metrics of metrics.jsonl,
// a resumed run's report covers the whole run, and a damaged metrics file is named.
#include <gtest/gtest.h>

#include <cairo.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/line_chart.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/config.h"
#include "anchorctx/train/run_report.h"
#include "anchorctx/train/trainer.h"
#include "support/error_of.h"
#include "support/small_dataset.h"
#include "support/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;
using anchorctx::test::error_of;
using anchorctx::test::read_file;
using anchorctx::test::TempDir;

struct PngReader {
  const std::string* bytes;
  std::size_t at = 0;
};

cairo_status_t read_png_bytes(void* closure, unsigned char* data, unsigned int length) {
  auto* r = static_cast<PngReader*>(closure);
  if (r->at + length > r->bytes->size()) return CAIRO_STATUS_READ_ERROR;
  std::memcpy(data, r->bytes->data() + r->at, length);
  r->at += length;
  return CAIRO_STATUS_SUCCESS;
}

// Width, height and the pixels in the palette's first colour (tab10 blue, the one series).
struct PngFacts {
  int width = 0, height = 0, blue = 0;
};
PngFacts png_facts(const std::string& png) {
  PngReader reader{&png};
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(read_png_bytes, &reader);
  PngFacts f;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    f.width = cairo_image_surface_get_width(s);
    f.height = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    for (int y = 0; y < f.height; ++y)
      for (int x = 0; x < f.width; ++x) {
        std::uint32_t px;
        std::memcpy(&px, data + y * stride + 4 * x, sizeof px);
        const int r = (px >> 16) & 255, g = (px >> 8) & 255, b = px & 255;
        f.blue += std::abs(r - 31) <= 12 && std::abs(g - 120) <= 12 && std::abs(b - 181) <= 12;
      }
  }
  cairo_surface_destroy(s);
  return f;
}

TEST(RunReport, MetricsAreReadWithNullsAsNaNAndBadLinesNamed) {
  const TempDir dir;
  const std::string path =
      dir.write("metrics.jsonl",
                "{\"step\": 1, \"loss\": 5.5, \"lr\": 0.001}\n"
                "{\"step\": 2, \"loss\": null, \"lr\": 0.002}\n\n"
                "{\"step\": 3, \"loss\": 4.25, \"lr\": 0.003, \"grad_norm\": 1.5}\n");
  const auto m = train::read_metrics_jsonl(path);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.at("loss").steps, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(m.at("loss").values[0], 5.5);
  EXPECT_TRUE(std::isnan(m.at("loss").values[1]));
  EXPECT_EQ(m.at("grad_norm").steps, (std::vector<double>{3}));
  // Each plot's one series is the metric as read.
  const std::vector<train::ReportPlot> plots = train::report_plots(m);
  ASSERT_EQ(plots.size(), 3u);
  EXPECT_EQ(plots[0].stem, "loss");
  EXPECT_EQ(plots[1].stem, "lr");
  EXPECT_EQ(plots[2].stem, "grad_norm");
  EXPECT_EQ(plots[1].chart.series.at(0).y, m.at("lr").values);
  EXPECT_EQ(plots[2].chart.y_scale, core::AxisScale::log);

  const std::string bad = dir.write("bad.jsonl", "{\"step\": 1, \"loss\": 2}\n{\"loss\": 3}\n");
  EXPECT_NE(error_of([&] { train::read_metrics_jsonl(bad); }).find("bad.jsonl:2"),
            std::string::npos);
  const std::string junk = dir.write("junk.jsonl", "{\"step\": 1}\n{\"step\": 2, \"loss\": 3\n");
  EXPECT_NE(error_of([&] { train::read_metrics_jsonl(junk); }).find("junk.jsonl:2: not JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { train::write_run_report(dir.path() / "no-run"); }).find("metrics.jsonl"),
            std::string::npos);
}

// A report that cannot be written is a warning and false, and the older report.md goes: after a
// resume it described the steps before, and passed as the run's report.
TEST(RunReport, AnUnwritableReportRemovesTheOlderOne) {
  const TempDir dir;
  const fs::path run = dir.path() / "run";
  fs::create_directories(run);
  dir.write("run/metrics.jsonl", "{\"step\": 1, \"loss\": 5.5}\n");
  dir.write("run/report.md", "# an older report\n");
  dir.write("run/plots", "a file where the plots folder goes");  // the report cannot be written
  EXPECT_FALSE(train::write_run_report_or_warn(run));
  EXPECT_FALSE(fs::exists(run / "report.md"));
  fs::remove(run / "plots");
  EXPECT_TRUE(train::write_run_report_or_warn(run));
  EXPECT_NE(read_file(run / "report.md").find("loss: 5.5000 at step 1"), std::string::npos);
  EXPECT_TRUE(fs::exists(run / "plots" / "loss.svg"));
}

// The newest checkpoint's files are read through core::read_json_file: a config.json holding
// a NUL byte was taken as the JSON before it (nlohmann stops there), and the report described
// a model from a damaged file; now the report leaves the line out.
TEST(RunReport, ADamagedCheckpointFileIsLeftOut) {
  const TempDir dir;
  dir.write("run/metrics.jsonl", "{\"step\": 1, \"loss\": 2.5}\n");
  dir.write("run/checkpoints/step-000001/trainer_state.json",
            "{\"step\": 1, \"tokens_seen\": 10, \"options\": {}}");
  dir.write("run/checkpoints/step-000001/config.json",
            std::string("{\"num_hidden_layers\": 3}\0junk", 29));
  train::write_run_report(dir.path() / "run");
  const std::string md = read_file(dir.path() / "run" / "report.md");
  EXPECT_NE(md.find("step 1 (10 tokens seen)"), std::string::npos) << md;
  EXPECT_EQ(md.find("- model:"), std::string::npos) << md;
}

// A run of 4 steps with a checkpoint at 2, resumed from step 2 in a new trainer up to 6 (it
// rewrites steps 3 and 4): the report and plots cover steps 1..6 as metrics.jsonl holds them.
TEST(RunReport, ResumedRunReportPlotsTheWholeRunsMetrics) {
  const TempDir dir;
  test::pack_small_corpus(dir.path());
  model::LlamaConfig c = model::preset("tiny");
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  model::save_config(c, dir.path() / "config.json");

  train::TrainOptions o;
  o.data = dir.path() / "data";
  o.out = dir.path() / "run";
  o.config_json = dir.path() / "config.json";
  o.steps = 4;
  o.save_every = 2;
  o.keep_last = 0;
  o.schedule.warmup_steps = 2;
  o.quiet = true;
  o.tensorboard = false;
  auto comm = dist::make_single_process_communicator();
  {
    train::Trainer first(o, *comm);
    first.run();
  }
  fs::remove_all(o.out / "checkpoints" / "step-000004");  // resume from step 2
  o.steps = 6;
  o.resume = true;
  train::Trainer resumed(o, *comm);
  const train::TrainResult r = resumed.run();
  ASSERT_EQ(r.steps.size(), 4u);  // steps 3..6 run by this call

  const auto metrics = train::read_metrics_jsonl(o.out / "metrics.jsonl");
  EXPECT_EQ(metrics.at("loss").steps, (std::vector<double>{1, 2, 3, 4, 5, 6}));
  for (std::size_t k = 0; k < r.steps.size(); ++k)
    EXPECT_EQ(metrics.at("loss").values[k + 2], r.steps[k].loss);
  const std::string md = read_file((o.out / "report.md").string());
  EXPECT_NE(md.find("steps 1 to 6"), std::string::npos) << md;
  EXPECT_NE(md.find("step 6 ("), std::string::npos) << md;
  // The options line names the recorded options by their long names (it listed snake_case
  // names that matched none of the recorded ones but six).
  for (const std::string shown : {" model-config=", " precision=fp32", " batch-windows=1",
                                  " grad-accum=1", " warmup-steps=2", " seed="})
    EXPECT_NE(md.find(shown), std::string::npos) << shown << "\n" << md;

  const std::vector<train::ReportPlot> plots = train::report_plots(metrics);
  ASSERT_EQ(plots.size(), 4u);  // loss, lr, grad_norm, tokens_per_s
  for (const train::ReportPlot& plot : plots) {
    SCOPED_TRACE(plot.stem);
    EXPECT_NE(md.find("](plots/" + plot.stem + ".svg)"), std::string::npos);
    const std::string svg = read_file((o.out / "plots" / (plot.stem + ".svg")).string());
    const std::string png = read_file((o.out / "plots" / (plot.stem + ".png")).string());
    EXPECT_NE(svg.find("<svg"), std::string::npos);
    EXPECT_EQ(plot.chart.series.at(0).x, metrics.at(plot.stem).steps);
    EXPECT_EQ(plot.chart.series.at(0).y, metrics.at(plot.stem).values);
    // The PNG on disk is the drawing of exactly these series (cairo's PNGs are deterministic),
    // and the series' colour is in it.
    EXPECT_EQ(png, core::render_chart(plot.chart).png);
    const PngFacts f = png_facts(png);
    EXPECT_EQ(f.width, 1520);
    EXPECT_EQ(f.height, 920);
    EXPECT_GT(f.blue, 200);
  }
  // A different loss curve would be a different picture.
  train::ReportPlot changed = plots[0];
  changed.chart.series[0].y[3] += 1.0;
  EXPECT_NE(core::render_chart(changed.chart).png,
            read_file((o.out / "plots" / "loss.png").string()));
}

}  // namespace
