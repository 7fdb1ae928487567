// The study's settings, run list and the pre-registered verdict rule (docs/STUDY.md). The rule
// is pinned here so that it cannot change quietly after results exist.
#include <cmath>
#include <limits>
#include <string>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "anchorctx/core/error.h"
#include "anchorctx/study/config.h"
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
  EXPECT_EQ(format_cell(c), "2.0 [1.0, 3.0]");
  EXPECT_EQ(format_cell(summarize({42.25})), "42.2");
  EXPECT_EQ(format_cell(summarize({})), "pending");
  EXPECT_EQ(format_cell(summarize({std::nan("")})), "pending");
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

}  // namespace
}  // namespace anchorctx::study
