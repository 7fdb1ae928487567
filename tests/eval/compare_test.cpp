// `eval --compare`: differences and their standard errors against hand-computed values (paired
// when the runs share seed, templates and depths; Welch otherwise), ppl rows over windows, cells
// missing from a run, and the refusals (missing, broken or foreign report files; nothing shared).
#include "anchorctx/eval/compare.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::eval {
namespace {

using nlohmann::json;

json cell(const std::string& task, std::int64_t length, const std::vector<double>& scores) {
  json samples = json::array();
  for (std::size_t i = 0; i < scores.size(); ++i)
    samples.push_back(
        {{"depth", task == "vt" ? json(nullptr) : json(0.25 * double(i))}, {"score", scores[i]}});
  return {{"task", task}, {"length", length}, {"samples", samples}};
}

// The cells as a vector: a braced list of one json is an array under g++ but a copy under clang.
json report(std::uint64_t seed, const std::vector<json>& niah, json ppl = json::array()) {
  return {{"seed", seed},           {"samples", 4},        {"template_set", "ruler"},
          {"lengths", {512, 1024}}, {"niah", niah},        {"ppl", ppl},
          {"ppl_source", "corpus"}, {"precision", "fp32"}, {"ppl_window_tokens", 1025}};
}

const RunScore& find(const Comparison& c, const std::string& task, std::int64_t length,
                     std::size_t run) {
  for (const CompareRow& r : c.rows)
    if (r.task == task && r.length == length) return r.runs.at(run);
  throw std::runtime_error("no row " + task);
}

TEST(Compare, PairedStandardErrorWhenTheSamplesAreTheSame) {
  const json a =
      report(7, {cell("vt", 512, {1, 0, 1, 1}), cell("niah_single_1", 512, {1, 1, 0, 0})});
  const json b =
      report(7, {cell("vt", 512, {1, 1, 1, 0}), cell("niah_single_1", 512, {1, 1, 1, 1})});
  const Comparison c = compare_reports({a, b}, {"runA", "runB"});
  const RunScore& vt = find(c, "vt", 512, 1);
  EXPECT_TRUE(vt.paired);
  EXPECT_DOUBLE_EQ(vt.mean, 75.0);
  EXPECT_DOUBLE_EQ(vt.diff, 0.0);
  // Differences 0, +100, 0, -100: sd sqrt(20000 / 3), se sd / 2.
  EXPECT_NEAR(vt.se, std::sqrt(20000.0 / 3.0) / 2.0, 1e-9);
  const RunScore& n1 = find(c, "niah_single_1", 512, 1);
  EXPECT_DOUBLE_EQ(n1.diff, 50.0);
  EXPECT_NEAR(n1.se, std::sqrt(10000.0 / 3.0) / 2.0, 1e-9);  // differences 0, 0, 100, 100
  EXPECT_TRUE(std::isnan(find(c, "vt", 512, 0).se));
  ASSERT_EQ(c.lengths, (std::vector<std::int64_t>{512}));
  EXPECT_DOUBLE_EQ(c.average[0][0], 62.5);
  EXPECT_DOUBLE_EQ(c.average[1][0], 87.5);
  EXPECT_TRUE(c.notes.empty());
}

TEST(Compare, WelchWhenTheSeedsDiffer) {
  const json a = report(7, {cell("vt", 512, {1, 0, 1, 1})});
  const json b = report(8, {cell("vt", 512, {1, 1, 1, 0})});
  const Comparison c = compare_reports({a, b}, {"a", "b"});
  const RunScore& vt = find(c, "vt", 512, 1);
  EXPECT_FALSE(vt.paired);
  EXPECT_NEAR(vt.se, std::sqrt(2500.0 / 4 + 2500.0 / 4), 1e-9);
  ASSERT_FALSE(c.notes.empty());
  EXPECT_NE(c.notes[0].find("'seed'"), std::string::npos) << c.notes[0];
}

TEST(Compare, NotesRunsComputedDifferently) {
  // The same prompts scored by native and emulated bf16 products: paired, and said.
  json a = report(7, {cell("vt", 512, {1, 0})});
  json b = report(7, {cell("vt", 512, {1, 1})});
  a["bf16_compute"] = "emulated";
  b["bf16_compute"] = "native";
  const Comparison c = compare_reports({a, b}, {"a", "b"});
  EXPECT_TRUE(find(c, "vt", 512, 1).paired);
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("'bf16_compute'"), std::string::npos) << c.notes[0];
}

TEST(Compare, PplRowsAndMissingCells) {
  const json ppl_a = json::array({{{"length", 512}, {"sample_loss", {1.0, 2.0}}}});
  const json ppl_b = json::array({{{"length", 512}, {"sample_loss", {1.5, 2.1}}}});
  const json a = report(1, {cell("cwe", 512, {0.5}), cell("fwe", 1024, {1.0})}, ppl_a);
  const json b = report(1, {cell("cwe", 512, {0.7})}, ppl_b);
  const json c3 = report(1, {cell("cwe", 512, {0.1})}, ppl_a);
  const Comparison c = compare_reports({a, b, c3}, {"a", "b", "c"});
  const RunScore& ppl = find(c, "ppl", 512, 1);
  EXPECT_TRUE(ppl.paired);
  EXPECT_NEAR(ppl.diff, 0.3, 1e-12);
  EXPECT_NEAR(ppl.se, 0.2, 1e-12);  // differences 0.5 and 0.1
  EXPECT_DOUBLE_EQ(find(c, "ppl", 512, 2).diff, 0.0);
  const RunScore& cwe = find(c, "cwe", 512, 1);
  EXPECT_NEAR(cwe.diff, 20.0, 1e-9);
  EXPECT_TRUE(std::isnan(cwe.se));  // one sample
  EXPECT_FALSE(find(c, "fwe", 1024, 1).present);
  EXPECT_TRUE(std::isnan(c.average[0][1]));  // fwe at 1024 is not in every run
  EXPECT_EQ(c.rows.back().task, "ppl");
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("fwe at 1024"), std::string::npos);

  const test::TempDir dir;
  write_comparison(c, dir.path() / "out");
  for (const char* f : {"compare.json", "compare.md", "compare_accuracy_vs_length.svg",
                        "compare_accuracy_vs_length.png"})
    EXPECT_TRUE(std::filesystem::exists(dir.path() / "out" / f)) << f;
  std::ifstream in(dir.path() / "out" / "compare.md");
  std::stringstream md;
  md << in.rdbuf();
  EXPECT_NE(md.str().find("| ppl | 512 | 1.5000 | 1.8000 | +0.3000 ± 0.2000 p |"),
            std::string::npos)
      << md.str();
  EXPECT_NE(md.str().find("+20.0 (1 sample)"), std::string::npos) << md.str();
}

// ppl windows are cut at max(lengths) + 1 tokens: runs with other length lists score other text
// at a shared length, and were paired on source and count alone (a standard error ~9x too small
// in the probe). A report that does not record the window length cannot be paired either.
TEST(Compare, PplPairedOnlyOverTheSameWindows) {
  const json ppl_a = json::array({{{"length", 512}, {"sample_loss", {1.0, 2.0, 1.5}}}});
  const json ppl_b = json::array({{{"length", 512}, {"sample_loss", {1.2, 2.4, 1.8}}}});
  const json a = report(1, {}, ppl_a);
  json b = report(1, {}, ppl_b);
  EXPECT_TRUE(find(compare_reports({a, b}, {"a", "b"}), "ppl", 512, 1).paired);

  b["ppl_window_tokens"] = 513;  // --lengths 512 against 512,1024
  const Comparison c = compare_reports({a, b}, {"a", "b"});
  const RunScore& ppl = find(c, "ppl", 512, 1);
  EXPECT_FALSE(ppl.paired);
  EXPECT_NEAR(ppl.se, std::sqrt(0.25 / 3 + 0.36 / 3), 1e-12);  // variances 0.25, 0.36
  ASSERT_EQ(c.notes.size(), 1u);
  EXPECT_NE(c.notes[0].find("'ppl_window_tokens'"), std::string::npos) << c.notes[0];

  json old_a = a, old_b = report(1, {}, ppl_b);  // reports written before the field
  old_a.erase("ppl_window_tokens");
  old_b.erase("ppl_window_tokens");
  const Comparison old = compare_reports({old_a, old_b}, {"old_a", "old_b"});
  EXPECT_FALSE(find(old, "ppl", 512, 1).paired);
  ASSERT_EQ(old.notes.size(), 2u);
  EXPECT_NE(old.notes[0].find("old_a does not record 'ppl_window_tokens'"), std::string::npos)
      << old.notes[0];
}

TEST(Compare, Refusals) {
  const json a = report(1, {cell("vt", 512, {1})});
  EXPECT_THROW(compare_reports({a}, {"a"}), Error);
  const json b = report(1, {cell("cwe", 512, {1})});
  try {
    compare_reports({a, b}, {"a", "b"});
    FAIL() << "compared reports that share nothing";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("share no"), std::string::npos) << e.what();
  }
  const test::TempDir dir;
  try {
    load_report(dir.path() / "absent");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos) << e.what();
  }
  std::ofstream(dir.path() / "broken.json") << "{\"niah\": [";
  EXPECT_THROW(load_report(dir.path() / "broken.json"), Error);
  std::ofstream(dir.path() / "other.json") << "{\"loss\": 1.0}";
  try {
    load_report(dir.path() / "other.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an `anchorctx eval` report"), std::string::npos)
        << e.what();
  }
  std::filesystem::create_directories(dir.path() / "run");
  std::ofstream(dir.path() / "run" / "report.json") << a.dump();
  EXPECT_EQ(load_report(dir.path() / "run")["seed"], 1);
}

// A value of the wrong type is named with the file and its place; it used to give nlohmann's
// raw type_error (a length as a string) or a silent NaN in the comparison (a score).
TEST(Compare, MalformedValuesAreNamedWithTheFile) {
  const test::TempDir dir;
  const auto error_of_report = [&](const json& r) {
    const std::string path = dir.file("report.json");
    std::ofstream(path) << r.dump();
    try {
      load_report(path);
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      return message;
    }
    return std::string();
  };
  json r = report(1, {cell("vt", 512, {1, 0})});
  r["niah"][0]["length"] = "512";
  EXPECT_NE(error_of_report(r).find("niah[0].length is not an integer"), std::string::npos);
  r = report(1, {cell("vt", 512, {1, 0})});
  r["niah"][0]["samples"][1]["score"] = "high";
  EXPECT_NE(error_of_report(r).find("niah[0].samples[1].score is missing or not a number"),
            std::string::npos);
  r = report(1, {cell("vt", 512, {1})},
             json::array({{{"length", 512}, {"sample_loss", {1.5, "x"}}}}));
  EXPECT_NE(error_of_report(r).find("ppl[0].sample_loss[1] is not a number"), std::string::npos);
  // null is a report's non-finite loss: accepted.
  r = report(1, {cell("vt", 512, {1})},
             json::array({{{"length", 512}, {"sample_loss", {1.5, nullptr}}}}));
  EXPECT_EQ(error_of_report(r), "");
}

// Values outside their range are named too: a score is a fraction of answers found, in [0, 1]
// (1e308 made the comparison's mean null, and it exited 0); a loss is finite and >= 0.
TEST(Compare, ValuesOutOfRangeAreNamedWithTheFile) {
  const test::TempDir dir;
  const std::string path = dir.file("report.json");
  const auto error_of_report = [&](const json& r) {
    std::ofstream(path) << r.dump();
    try {
      load_report(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  for (const double score : {1e308, -1.0, 1.0000001, 18446744073709551616.0}) {
    json r = report(1, {cell("vt", 512, {1, 0})});
    r["niah"][0]["samples"][1]["score"] = score;
    const std::string e = error_of_report(r);
    EXPECT_NE(e.find(path + ": niah[0].samples[1].score is "), std::string::npos) << e;
    EXPECT_NE(e.find("outside [0, 1]"), std::string::npos) << e;
  }
  const json r = report(1, {cell("vt", 512, {1})},
                        json::array({{{"length", 512}, {"sample_loss", {1.5, -0.5}}}}));
  const std::string e = error_of_report(r);
  EXPECT_NE(e.find(path + ": ppl[0].sample_loss[1] is -0.5, not a finite loss >= 0"),
            std::string::npos)
      << e;
  // (An infinite loss cannot be written: JSON has none, and nlohmann refuses 1e999 by name.)
  EXPECT_EQ(error_of_report(report(1, {cell("vt", 512, {0, 0.5, 1})})), "");
}

// Reports through core::read_json_file: a FIFO in place of report.json blocked for good.
TEST(Compare, AReportThatIsNotAFileIsNamed) {
  const test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "run");
  const std::string fifo = (dir.path() / "run" / "report.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  try {
    load_report(dir.path() / "run");
    FAIL() << "read a FIFO";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fifo + ": not a regular file (a FIFO"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace anchorctx::eval
