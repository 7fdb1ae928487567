// Resume rules (train/resume_rules.h): which recorded options a resume may change, how each
// difference is named, and the model config compared field by field.
#include "anchorctx/train/resume_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/train/trainer.h"

namespace anchorctx::train {
namespace {

const nlohmann::json kNone = nlohmann::json::object();

std::vector<std::string> texts(const std::vector<Difference>& ds) {
  std::vector<std::string> out;
  for (const Difference& d : ds)
    out.push_back(d.text());
  return out;
}

TEST(ResumeRules, SameOptionsDiffNothing) {
  TrainOptions o;
  o.preset = "tiny";
  const model::LlamaConfig c = model::preset("tiny");
  const ResumeDifferences d = compare_for_resume(o.to_json(), o.to_json(), kNone, kNone, c, c);
  EXPECT_TRUE(d.refused.empty());
  EXPECT_TRUE(d.allowed.empty());
}

TEST(ResumeRules, MeaningChangesAreRefusedScheduleChangesAllowed) {
  TrainOptions before;
  before.preset = "tiny";
  TrainOptions after = before;
  after.batch.mask = attention::MaskKind::causal;
  after.run.precision = model::Precision::bf16;
  after.grad_accum = 4;
  after.steps = 500;
  after.schedule.lr = 1e-3;
  after.save_every = 10;
  after.run.threads = 1;
  const model::LlamaConfig c = model::preset("tiny");
  const ResumeDifferences d =
      compare_for_resume(before.to_json(), after.to_json(), kNone, kNone, c, c);
  const std::vector<std::string> refused = texts(d.refused), allowed = texts(d.allowed);
  EXPECT_EQ(refused, (std::vector<std::string>{"grad-accum: 1 -> 4", "mask: anchor -> causal",
                                               "precision: fp32 -> bf16"}));
  EXPECT_EQ(allowed, (std::vector<std::string>{"lr: 0.0003 -> 0.001", "save-every: 0 -> 10",
                                               "steps: 100 -> 500", "threads: 0 -> 1"}));
}

TEST(ResumeRules, DatasetAndModelAreComparedByContent) {
  const model::LlamaConfig tiny = model::preset("tiny");
  model::LlamaConfig wider = tiny;
  wider.intermediate_size += 64;
  const nlohmann::json ds_a = {{"seq_len", 96}, {"files", {{"tokens.bin", "aa"}}}};
  nlohmann::json ds_b = ds_a;
  ds_b["seq_len"] = 64;
  ds_b["files"]["tokens.bin"] = "bb";
  const ResumeDifferences d = compare_for_resume(kNone, kNone, ds_a, ds_b, tiny, wider);
  const std::string model_change =
      "model intermediate_size: " + std::to_string(tiny.intermediate_size) + " -> " +
      std::to_string(wider.intermediate_size);
  EXPECT_EQ(texts(d.refused),
            (std::vector<std::string>{"dataset files.tokens.bin: aa -> bb",
                                      "dataset seq_len: 96 -> 64", model_change}));
  EXPECT_TRUE(d.allowed.empty());
}

// A key the recorded side lacks is compared too: a trainer_state.json stripped of "seed" or of
// the dataset's hashes used to resume with any value. Fixed options and the dataset refuse it;
// the others are taken and reported.
TEST(ResumeRules, KeysTheRecordedSideLacksAreDifferences) {
  TrainOptions o;
  o.preset = "tiny";
  o.seed = 7;
  nlohmann::json recorded = o.to_json();
  recorded.erase("seed");
  recorded.erase("lr");
  const nlohmann::json ds = {{"seq_len", 96}, {"files", {{"tokens.bin", "aa"}}}};
  nlohmann::json recorded_ds = ds;
  recorded_ds["files"].erase("tokens.bin");
  const model::LlamaConfig c = model::preset("tiny");
  const ResumeDifferences d = compare_for_resume(recorded, o.to_json(), recorded_ds, ds, c, c);
  EXPECT_EQ(texts(d.refused), (std::vector<std::string>{"seed: (not recorded) -> 7",
                                                        "dataset files.tokens.bin: (not recorded) "
                                                        "-> aa"}));
  EXPECT_EQ(texts(d.allowed), std::vector<std::string>{"lr: (not recorded) -> 0.0003"});
  // An empty recorded identity is no identity: every key refused, not "not compared".
  EXPECT_EQ(compare_for_resume(o.to_json(), o.to_json(), kNone, ds, c, c).refused.size(), 2u);
}

// A checkpoint from before --sp and the process count were recorded ran on one process without
// sequence parallelism: it resumes so, and is refused at another --sp as any would be.
TEST(ResumeRules, FixedOptionsRecordedLaterTakeTheirEarlierValue) {
  TrainOptions o;
  o.preset = "tiny";
  o.world_size = 1;  // as a run records it
  nlohmann::json recorded = o.to_json();
  recorded.erase("sp");
  recorded.erase("world-size");
  const model::LlamaConfig c = model::preset("tiny");
  EXPECT_TRUE(compare_for_resume(recorded, o.to_json(), kNone, kNone, c, c).refused.empty());
  o.sp = 2;
  EXPECT_EQ(texts(compare_for_resume(recorded, o.to_json(), kNone, kNone, c, c).refused),
            std::vector<std::string>{"sp: 1 -> 2"});
}

// Another JSON type made the comparison skip its checks; load_checkpoint refuses it, and
// compare_for_resume will not skip one either.
TEST(ResumeRules, NonObjectsAreRefused) {
  TrainOptions o;
  o.preset = "tiny";
  const model::LlamaConfig c = model::preset("tiny");
  EXPECT_THROW(compare_for_resume(nlohmann::json::array(), o.to_json(), kNone, kNone, c, c), Error);
  EXPECT_THROW(compare_for_resume(o.to_json(), o.to_json(), "x", kNone, c, c), Error);
}

}  // namespace
}  // namespace anchorctx::train
