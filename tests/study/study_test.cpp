// The study's settings, run list and the pre-registered verdict rule (docs/STUDY.md). The rule
// is pinned here so that it cannot change quietly after results exist.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/study/config.h"
#include "anchorctx/study/study.h"
#include "anchorctx/study/verdict.h"
#include "study/files.h"
#include "study/summary.h"
#include "support/temp_dir.h"

namespace anchorctx::study {
namespace {

const Claim& claim(const std::string& id) {
  for (const Claim& c : paper_claims())
    if (c.id == id) return c;
  throw std::runtime_error("no claim " + id);
}

TEST(StudyVerdict, ReproducedOnlyBeyondTheSeedSpread) {
  const Claim& c1 = claim("C1");  // anchor - full > 0
  // Difference 10, spread 4 (anchor's range): reproduced.
  Judgement j = judge(c1, {{"anchor", {60, 62, 64}}, {"full", {51, 52, 53}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::reproduced);
  EXPECT_DOUBLE_EQ(j.effect, 10.0);
  EXPECT_DOUBLE_EQ(j.spread, 4.0);
  EXPECT_DOUBLE_EQ(j.threshold, 4.0);
  // Same means, a seed range of 12 on full: within the spread.
  j = judge(c1, {{"anchor", {60, 62, 64}}, {"full", {46, 52, 58}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
  EXPECT_DOUBLE_EQ(j.spread, 12.0);
  // The opposite beyond the spread.
  j = judge(c1, {{"anchor", {40, 41, 42}}, {"full", {51, 52, 53}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::not_reproduced);
  // Two seeds: effect 5, spread 2.
  j = judge(c1, {{"anchor", {54, 56}}, {"full", {50, 50}}}, 1.0);
  EXPECT_DOUBLE_EQ(j.effect, 5.0);
  EXPECT_DOUBLE_EQ(j.spread, 2.0);
  EXPECT_EQ(j.verdict, Verdict::reproduced);
  // An effect exactly at the spread is not beyond it.
  j = judge(c1, {{"anchor", {51, 53}}, {"full", {50, 50}}}, 1.0);
  EXPECT_DOUBLE_EQ(j.effect, 2.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
}

TEST(StudyVerdict, MinEffectFloorsTheThreshold) {
  const Claim& c1 = claim("C1");
  // Identical seeds (spread 0, e.g. every score at the floor): a 0.5 point difference does not
  // count under a 1 point minimum.
  Judgement j = judge(c1, {{"anchor", {0.5, 0.5}}, {"full", {0.0, 0.0}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
  EXPECT_DOUBLE_EQ(j.threshold, 1.0);
  j = judge(c1, {{"anchor", {0.0, 0.0}}, {"full", {0.0, 0.0}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
}

TEST(StudyVerdict, InconclusiveWithoutSpreadOrRuns) {
  const Claim& c1 = claim("C1");
  // One seed each: no spread, whatever the difference.
  Judgement j = judge(c1, {{"anchor", {90}}, {"full", {10}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
  EXPECT_NE(j.reason.find("no spread"), std::string::npos);
  j = judge(c1, {{"anchor", {90, 91}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
  EXPECT_NE(j.reason.find("full was not run"), std::string::npos);
  j = judge(c1, {{"anchor", {90, std::nan("")}}, {"full", {1, 2}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive);
  EXPECT_NE(j.reason.find("non-finite"), std::string::npos);
}

TEST(StudyVerdict, ContrastOfContrastsUsesTheSeededVariantsSpread) {
  // C6: (full_fp32 - full) - (anchor_fp32 - anchor); the fp32 controls have one seed, the bf16
  // variants three: the spread is the larger bf16 range.
  const Claim& c6 = claim("C6");
  Judgement j = judge(c6,
                      {{"full_fp32", {70}},
                       {"full", {50, 51, 52}},
                       {"anchor_fp32", {72}},
                       {"anchor", {69, 70, 71}}},
                      1.0);
  EXPECT_DOUBLE_EQ(j.effect, (70 - 51) - (72 - 70));
  EXPECT_DOUBLE_EQ(j.spread, 2.0);
  EXPECT_EQ(j.verdict, Verdict::reproduced);
}

TEST(StudyVerdict, StepTimeClaimIsFullMinusAnchor) {
  const Claim& c7 = claim("C7");
  EXPECT_EQ(c7.metric, "step_s");
  const Judgement j = judge(c7, {{"full", {3.0, 3.2}}, {"anchor", {1.9, 2.0}}}, 0.0);
  EXPECT_EQ(j.verdict, Verdict::reproduced);
  EXPECT_NEAR(j.effect, 1.15, 1e-12);
  EXPECT_EQ(to_string(Verdict::not_reproduced), "not reproduced");
}

TEST(StudyConfig, DefaultsAreValidAndTheRunListIsSeedMajor) {
  const StudyConfig c = default_config();
  EXPECT_NO_THROW(validate(c));
  EXPECT_NO_THROW(validate(quick_config()));
  EXPECT_EQ(c.stage1_seq_len, 8 * c.stage0_seq_len);
  const std::vector<RunId> runs = stage1_runs(c);
  // 4 bf16 variants x 3 seeds + 3 controls with the first seed.
  ASSERT_EQ(runs.size(), 15u);
  EXPECT_EQ(runs.front().name(), "full-s1");
  EXPECT_EQ(runs[6].name(), "anchor_exact-s1");
  EXPECT_EQ(runs[7].name(), "full-s2");
  for (const RunId& r : runs) {
    if (find_variant(r.variant)->control) {
      EXPECT_EQ(r.seed, 1u);
    }
  }
}

TEST(StudyConfig, ValidationNamesTheSetting) {
  const auto message = [](StudyConfig c) -> std::string {
    try {
      validate(c);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  StudyConfig c = default_config();
  c.variants = {"full", "sliding"};
  EXPECT_NE(message(c).find("unknown variant 'sliding'"), std::string::npos);
  c = default_config();
  c.stage1_seq_len = c.stage0_seq_len;
  EXPECT_NE(message(c).find("stage1-seq-len"), std::string::npos);
  c = default_config();
  c.eval_lengths = {1024, 512};
  EXPECT_NE(message(c).find("eval-lengths"), std::string::npos);
  c = default_config();
  c.eval_tasks = {"ppl"};
  EXPECT_NE(message(c).find("'ppl'"), std::string::npos);
  c = default_config();
  c.seeds = {1, 1};
  EXPECT_NE(message(c).find("seed 1 listed twice"), std::string::npos);
  // Every length beyond the window: no primary score, so no score claim could be judged.
  c = default_config();
  c.eval_lengths = {8192};
  EXPECT_NE(message(c).find("no eval-lengths within the stage-1 window (4096"), std::string::npos)
      << message(c);
  c.eval_lengths = {4096, 8192};
  EXPECT_EQ(message(c), "");
  c = default_config();
  c.preset = "huge";
  EXPECT_NE(message(c).find("huge"), std::string::npos);
}

TEST(StudyConfig, ScaleMultipliesStepsCorpusAndSamples) {
  const StudyConfig base = default_config();
  const StudyConfig two = scaled(base, 2.0);
  EXPECT_EQ(two.stage0_steps, 2 * base.stage0_steps);
  EXPECT_EQ(two.stage1_steps, 2 * base.stage1_steps);
  EXPECT_EQ(two.stage1_documents, 2 * base.stage1_documents);
  EXPECT_EQ(two.eval_samples, 2 * base.eval_samples);
  EXPECT_EQ(two.stage1_seq_len, base.stage1_seq_len);  // the experiment's shape is kept
  EXPECT_EQ(scaled(quick_config(), 0.01).stage1_steps, 1);
  EXPECT_THROW(scaled(base, 0.0), Error);
  EXPECT_THROW(scaled(base, std::numeric_limits<double>::quiet_NaN()), Error);
}

TEST(StudySummary, CellsSkipNonFiniteValues) {
  Cell c = summarize({3.0, std::nan(""), 1.0, 2.0});
  EXPECT_EQ(c.n, 3u);
  EXPECT_DOUBLE_EQ(c.mean, 2.0);
  EXPECT_DOUBLE_EQ(c.lo, 1.0);
  EXPECT_DOUBLE_EQ(c.hi, 3.0);
  EXPECT_EQ(c.missing, 1u);
  // A left-out value is marked: the numbers are 3 of the 4 seeds (they passed for all 4).
  EXPECT_EQ(format_cell(c), "2.0 [1.0, 3.0] (3 of 4)");
  EXPECT_EQ(format_cell(summarize({3.0, 1.0})), "2.0 [1.0, 3.0]");
  EXPECT_EQ(format_cell(summarize({42.25})), "42.2");
  EXPECT_EQ(format_cell(summarize({30.0, std::nan("")})), "30.0 (1 of 2)");
  EXPECT_EQ(format_cell(summarize({})), "pending");
  // Only non-finite values: no number, but not pending either.
  EXPECT_EQ(format_cell(summarize({std::nan("")})), "n/a");
  EXPECT_EQ(format_mean(summarize({0.5, std::nan("")}), 3), "0.500 (1 of 2)");
  EXPECT_EQ(format_mean(summarize({std::nan("")}), 3), "n/a");
  EXPECT_EQ(format_mean(summarize({}), 3), "pending");
}

// The study's done markers through core::read_regular_file and parse_json: a folder in place
// of one gave a parse error of an empty text, a NUL byte ended nlohmann's parse early (the
// garbage after it taken as valid), and a FIFO blocked the study for good.
TEST(StudyFiles, ReadJsonRefusesWhatIsNotAJsonFile) {
  const test::TempDir dir;
  const auto error_of_read = [](const std::string& path) {
    try {
      read_json(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::filesystem::create_directories(dir.path() / "folder.json");
  std::string e = error_of_read(dir.file("folder.json"));
  EXPECT_NE(e.find(dir.file("folder.json") + ": not a regular file (a folder"), std::string::npos)
      << e;
  const std::string nul = dir.write("nul.json", std::string("{\"checkpoint\": \"x\"}\0junk", 24));
  e = error_of_read(nul);
  EXPECT_NE(e.find(nul + ": not valid JSON: a NUL byte"), std::string::npos) << e;
  EXPECT_NE(e.find("delete it to redo that part"), std::string::npos) << e;
  const std::string fifo = dir.file("fifo.json");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  e = error_of_read(fifo);
  EXPECT_NE(e.find(fifo + ": not a regular file (a FIFO"), std::string::npos) << e;
  EXPECT_EQ(read_json(dir.write("ok.json", "{\"checkpoint\": \"x\"}")).at("checkpoint"), "x");
}

// A study folder made of markers alone, as the report reads it (no training): study.json with
// the settings, then whatever markers a test writes.
class CraftedStudy {
 public:
  explicit CraftedStudy(StudyConfig config) : c(std::move(config)) {
    write_json(dir.path() / "study.json", {{"config", c.to_json()}});
  }
  std::filesystem::path run(const std::string& name) const { return dir.path() / "stage1" / name; }
  // eval-done.json with score(task index, length) for every task and length.
  void eval(const std::string& name, const std::function<double(int, std::int64_t)>& score,
            double loss = 1.0) const {
    nlohmann::json scores = nlohmann::json::object();
    for (std::size_t t = 0; t < c.eval_tasks.size(); ++t)
      for (const std::int64_t l : c.eval_lengths) {
        const double v = score(static_cast<int>(t), l);
        scores[c.eval_tasks[t]][std::to_string(l)] =
            std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
      }
    const std::int64_t longest = c.eval_lengths.back();
    nlohmann::json buckets = nlohmann::json::array();
    buckets.push_back({0, longest / 2, std::isfinite(loss) ? nlohmann::json(loss) : nullptr});
    buckets.push_back({longest / 2, longest, 2.0});
    const nlohmann::json ppl =
        nlohmann::json::array({{{"length", longest}, {"loss", 1.5}, {"buckets", buckets}}});
    std::filesystem::create_directories(run(name));
    write_json(run(name) / "eval-done.json", {{"scores", scores}, {"ppl", ppl}, {"seconds", 1}});
  }
  void train(const std::string& name, double step_s) const {
    std::filesystem::create_directories(run(name));
    write_json(run(name) / "train-done.json",
               {{"checkpoint", "stage1/" + name + "/run/checkpoints/step-000001"},
                {"loss", nlohmann::json::array({{1, 5.0}})},
                {"step_s_median", std::isfinite(step_s) ? nlohmann::json(step_s) : nullptr}});
  }
  void report() const { write_study_report(c, dir.path(), {}); }
  std::string md() const { return test::read_file(dir.path() / "report.md"); }
  nlohmann::json verdict(const std::string& id) const {
    const nlohmann::json report =
        nlohmann::json::parse(test::read_file(dir.path() / "report.json"));
    for (const nlohmann::json& v : report.at("verdicts"))
      if (v.at("claim") == id) return v;
    return nullptr;
  }
  std::string error_of_report() const {
    try {
      report();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  StudyConfig c;
  test::TempDir dir;
};

StudyConfig two_variants(StudyConfig c) {
  c.variants = {"full", "anchor"};
  c.seeds = {1, 2};
  return c;
}

// The probe's case: the default shape (3 tasks x 16 prompts, 4 lengths up to the window) with
// hit counts whose C1 effect and seed spread are both exactly 25/8. The mean over tasks (a /3)
// rounded the spread to 3.1249999999999982, and the tie came out "reproduced" ("effect +3.12
// exceeds the threshold 3.12").
TEST(StudyReport, ExactTieIsInconclusiveWhateverTheRounding) {
  const CraftedStudy s(two_variants(default_config()));
  ASSERT_EQ(s.c.eval_tasks.size(), 3u);
  const std::vector<std::int64_t> lengths = {512, 1024, 2048, 4096};
  // Hits of 16 per [length][task], tasks in sorted (JSON) order: niah_multikey_1,
  // niah_multikey_2, niah_single_2.
  const std::map<std::string, std::vector<std::vector<int>>> hits = {
      {"anchor-s1", {{3, 2, 2}, {3, 0, 0}, {2, 0, 2}, {1, 0, 3}}},
      {"anchor-s2", {{0, 3, 1}, {2, 3, 3}, {2, 2, 2}, {3, 1, 2}}},
      {"full-s1", {{1, 1, 0}, {0, 0, 1}, {2, 1, 2}, {2, 3, 2}}},
      {"full-s2", {{3, 3, 0}, {1, 1, 2}, {1, 0, 1}, {0, 1, 2}}}};
  const std::vector<std::string> sorted = {"niah_multikey_1", "niah_multikey_2", "niah_single_2"};
  for (const auto& entry : hits) {
    const std::vector<std::vector<int>>& h = entry.second;  // (clang 14 captures no bindings)
    s.eval(entry.first, [&](int t, std::int64_t l) {
      const auto task = std::find(sorted.begin(), sorted.end(), s.c.eval_tasks[t]) - sorted.begin();
      const auto li = std::find(lengths.begin(), lengths.end(), l) - lengths.begin();
      return li == 4 ? 0.0 : h[li][task] * 100.0 / 16;
    });
  }
  s.report();
  const nlohmann::json c1 = s.verdict("C1");
  EXPECT_EQ(c1.at("verdict"), "inconclusive") << c1.dump();
  EXPECT_NEAR(c1.at("effect").get<double>(), 3.125, 1e-12);
  EXPECT_NEAR(c1.at("spread").get<double>(), 3.125, 1e-12);
  EXPECT_NE(c1.at("reason").get<std::string>().find("within the threshold"), std::string::npos);
  // judge alone, with the rounded values either side of the tie, and a real difference kept.
  const Claim& c1_claim = claim("C1");
  const double rounded = 3.1249999999999982;
  Judgement j = judge(c1_claim, {{"anchor", {10.0, 10.0 + rounded}}, {"full", {5.0, 5.0}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::reproduced) << j.reason;  // effect 6.56 > 3.12: no tie
  j = judge(c1_claim, {{"anchor", {3.125, 3.125}}, {"full", {0.0, rounded}}}, 1.0);
  EXPECT_EQ(j.verdict, Verdict::inconclusive) << j.reason;
  j = judge(c1_claim, {{"anchor", {0.0, 0.0}}, {"full", {3.125 + 1e-15, 3.125 + 2e-15}}}, 3.125);
  EXPECT_EQ(j.verdict, Verdict::inconclusive) << j.reason;
  j = judge(c1_claim, {{"anchor", {3.2, 3.2}}, {"full", {0.0, 0.0}}}, 3.125);
  EXPECT_EQ(j.verdict, Verdict::reproduced) << j.reason;
}

// --report-only wrote report.md, report.json and plots/ into any folder: over a training run's
// own report.md, or into a mistyped path it created. Its refusal of other settings named none.
TEST(StudyReport, OnlyAStudyFolderGetsAReport) {
  const test::TempDir dir;
  const StudyConfig c = quick_config();
  const auto error_of = [&](const std::filesystem::path& out) -> std::string {
    try {
      write_study_report(c, out, {});
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::filesystem::path typo = dir.path() / "typo" / "studdy";
  EXPECT_NE(error_of(typo).find(typo.string() + " is no folder"), std::string::npos)
      << error_of(typo);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "typo"));
  const std::string run_report = dir.write("trainrun/report.md", "# Training run\n");
  const std::string e = error_of(dir.path() / "trainrun");
  EXPECT_NE(e.find("is not a study folder (it has no study.json)"), std::string::npos) << e;
  EXPECT_EQ(test::read_file(run_report), "# Training run\n");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "trainrun" / "report.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "trainrun" / "plots"));
  // Other settings: named with both values, as the run's refusal names them.
  const CraftedStudy s(c);
  StudyConfig other = c;
  other.stage1_lr = 0.001;
  try {
    write_study_report(other, s.dir.path(), {});
    ADD_FAILURE() << "other settings were not refused";
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("stage1-lr (0.0005 before, 0.001 now)"),
              std::string::npos)
        << err.what();
  }
  EXPECT_EQ(s.error_of_report(), "");
}

// report.json gave the partial sums of a claim it could not compute: C2 with intra_cont never
// run had "effect" mean(anchor), spread anchor's range, threshold 0.
TEST(StudyReport, ClaimsThatCannotBeComputedHaveNoNumbers) {
  const CraftedStudy s(two_variants(quick_config()));
  s.eval("anchor-s1", [](int, std::int64_t) { return 10.0; });
  s.eval("anchor-s2", [](int, std::int64_t) { return 20.0; });
  s.eval("full-s1", [](int, std::int64_t) { return 0.0; });
  s.eval("full-s2", [](int t, std::int64_t l) { return t == 0 && l == 128 ? NAN : 0.0; });
  s.report();
  for (const char* id : {"C1", "C2", "C6"}) {
    const nlohmann::json v = s.verdict(id);
    EXPECT_EQ(v.at("verdict"), "inconclusive") << v.dump();
    EXPECT_TRUE(v.at("effect").is_null()) << v.dump();
    EXPECT_TRUE(v.at("spread").is_null()) << v.dump();
    EXPECT_TRUE(v.at("threshold").is_null()) << v.dump();
  }
  EXPECT_NE(s.verdict("C2").at("reason").get<std::string>().find("intra_cont was not run"),
            std::string::npos);
  EXPECT_NE(s.verdict("C1").at("reason").get<std::string>().find("full has a non-finite"),
            std::string::npos);
  // One seed each: the effect is known, the spread is not.
  const CraftedStudy one(quick_config());
  one.eval("anchor-s1", [](int, std::int64_t) { return 10.0; });
  one.eval("full-s1", [](int, std::int64_t) { return 0.0; });
  one.report();
  const nlohmann::json v = one.verdict("C1");
  EXPECT_DOUBLE_EQ(v.at("effect").get<double>(), 10.0);
  EXPECT_TRUE(v.at("spread").is_null()) << v.dump();
  EXPECT_TRUE(v.at("threshold").is_null()) << v.dump();
}

// A marker of valid JSON but another shape stopped the study with nlohmann's own text ("key
// 'scores' not found", "type must be number, but is string"), naming no file.
TEST(StudyFiles, MarkersOfAnotherShapeAreNamed) {
  const CraftedStudy s(two_variants(quick_config()));
  s.eval("full-s1", [](int, std::int64_t) { return 0.0; });
  const std::filesystem::path eval = s.run("anchor-s1") / "eval-done.json";
  const auto expect_named = [&](const std::filesystem::path& file, const std::string& text,
                                const std::string& what) {
    std::filesystem::create_directories(file.parent_path());
    s.dir.write(std::filesystem::relative(file, s.dir.path()).string(), text);
    const std::string e = s.error_of_report();
    EXPECT_NE(e.find("study: " + file.string() + ": " + what), std::string::npos) << e;
    EXPECT_NE(e.find("delete it to redo that part"), std::string::npos) << e;
    EXPECT_EQ(e.find("json.exception"), std::string::npos) << e;
    std::filesystem::remove(file);
  };
  expect_named(eval, "{}", "the file has no key 'scores'");
  expect_named(eval, "[1]", "the file is not a JSON object");
  expect_named(eval, R"({"scores":{"niah_single_2":{"128":"x"}},"ppl":[]})",
               "'scores'.niah_single_2.128 is not a number (it is a string)");
  // Accepted before, and read as a NaN score: a marker without the study's scores.
  expect_named(eval, R"({"scores":{},"ppl":[]})", "'scores'.niah_single_2 has no key '128'");
  const std::filesystem::path train = s.run("full-s1") / "train-done.json";
  expect_named(train, R"({"checkpoint":"stage1/full-s1/run/checkpoints/step-000003","loss":[]})",
               "the file has no key 'step_s_median'");
  expect_named(train, R"({"checkpoint":"c","loss":5,"step_s_median":1})",
               "'loss' is not an array (it is a number)");
  expect_named(s.run("full-s1") / "drift-done.json", R"({"D":{"fp32":"x"}})",
               "'D'.fp32 is not a number (it is a string)");
  EXPECT_EQ(s.error_of_report(), "");
}

// A diverged stage-1 run (failed.json) is a result: listed as diverged, not pending; its
// variant's claims inconclusive, saying so (they said "pending" and "variant full was not run").
TEST(StudyReport, DivergedRunIsReportedNotPending) {
  const CraftedStudy s(two_variants(quick_config()));
  std::filesystem::create_directories(s.run("full-s1"));
  write_json(s.run("full-s1") / "failed.json",
             {{"stage", "training"}, {"reason", "train: step 2: non-finite gradient norm (nan)"}});
  s.eval("full-s2", [](int, std::int64_t) { return 5.0; });
  s.train("full-s2", 0.5);
  for (const char* r : {"anchor-s1", "anchor-s2"}) {
    s.eval(r, [](int, std::int64_t) { return 9.0; });
    s.train(r, 0.25);
  }
  s.report();
  const std::string md = s.md();
  EXPECT_NE(md.find("finished and evaluated: 3 of 4."), std::string::npos) << md;
  EXPECT_EQ(md.find("**Pending:"), std::string::npos) << md;
  EXPECT_NE(md.find("Diverged in training (a result: no value, claims inconclusive): full-s1 "
                    "(train: step 2: non-finite gradient norm (nan))"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| Full attention | 2 | 5.0 (1 of 2) |"), std::string::npos) << md;
  for (const char* id : {"C1", "C7"}) {
    const nlohmann::json v = s.verdict(id);
    EXPECT_EQ(v.at("verdict"), "inconclusive");
    EXPECT_EQ(v.at("reason"), "variant full: run full-s1 diverged in training") << v.dump();
  }
}

// --stage1-steps 1: the median step time leaves out the first step, so there is none; the
// report said "pending" for finished runs and C7 "variant full was not run".
TEST(StudyReport, OneStepRunsHaveNoStepTimeAndSaySo) {
  StudyConfig c = two_variants(quick_config());
  c.stage1_steps = 1;
  const CraftedStudy s(c);
  for (const char* r : {"full-s1", "full-s2", "anchor-s1", "anchor-s2"}) {
    s.eval(r, [](int, std::int64_t) { return 0.0; });
    s.train(r, NAN);
  }
  s.report();
  const std::string md = s.md();
  EXPECT_NE(md.find("| Full attention | not measured (1 step) |  |"), std::string::npos) << md;
  EXPECT_NE(md.find("| AnchorAttention | not measured (1 step) |  |"), std::string::npos) << md;
  EXPECT_EQ(md.find("| pending | |\n"), std::string::npos) << md;
  const std::string reason = s.verdict("C7").at("reason");
  EXPECT_EQ(reason.find("was not run"), std::string::npos) << reason;
  EXPECT_NE(reason.find("run full-s1 has no measured step time"), std::string::npos) << reason;
}

// A NaN in one seed vanished from a table cell (the other seed's value printed as the mean of
// 2); the held-out loss table did the same and left out variants with no data.
TEST(StudyReport, NonFiniteValuesAreMarkedInTheTables) {
  StudyConfig c = two_variants(quick_config());
  c.variants.push_back("anchor_fp32");
  const CraftedStudy s(c);
  s.eval(
      "full-s1", [](int, std::int64_t l) { return l == 128 ? NAN : 10.0; }, NAN);
  s.eval(
      "full-s2", [](int, std::int64_t) { return 30.0; }, 0.5);
  s.eval("anchor-s1", [](int, std::int64_t) { return 0.0; });
  s.report();
  const std::string md = s.md();
  // Columns 512, 256, 128, then the mean up to the window (128, 256).
  EXPECT_NE(md.find("| Full attention | 2 | 20.0 [10.0, 30.0] | 20.0 [10.0, 30.0] | 30.0 (1 of "
                    "2) | 30.0 (1 of 2) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| Full attention | 0.500 (1 of 2) | 2.000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| AnchorAttention, fp32 | pending | pending |"), std::string::npos) << md;
}

}  // namespace
}  // namespace anchorctx::study
