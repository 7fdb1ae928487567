// The training loop end to end on a small packed dataset: the loss falls, resume is
// bit-identical, non-finite values stop the run before any checkpoint, metrics are written.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/config.h"
#include "anchorctx/train/checkpoint.h"
#include "anchorctx/train/trainer.h"
#include "support/temp_dir.h"
#include "support/tiny_config.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;

// A small model over the byte tokenizer's 259 ids.
fs::path write_small_config(const fs::path& dir) {
  const model::LlamaConfig c = test::tiny_config();
  const fs::path path = dir / "config.json";
  model::save_config(c, path);
  return path;
}

// The built-in corpus packed into windows of 128 tokens (shared anchor).
fs::path make_dataset(const fs::path& dir) {
  data::BuiltinCorpusOptions corpus;
  corpus.documents = 60;
  corpus.median_chars = 150;
  corpus.min_chars = 20;
  corpus.max_chars = 600;
  std::string jsonl;
  for (const std::string& d : data::builtin_corpus(corpus))
    jsonl += nlohmann::json{{"text", d}}.dump() + "\n";
  const fs::path corpus_path = dir / "corpus.jsonl";
  std::ofstream(corpus_path) << jsonl;
  data::PackConfig pack;
  pack.inputs = {corpus_path.string()};
  pack.out = (dir / "data").string();
  pack.seq_len = 128;
  pack.quiet = true;
  pack.threads = 1;
  data::pack_dataset(pack);
  return dir / "data";
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = write_small_config(dir_.path());
    data_ = make_dataset(dir_.path());
  }
  train::TrainOptions options(const std::string& run, std::int64_t steps) const {
    train::TrainOptions o;
    o.data = data_;
    o.out = dir_.path() / run;
    o.config_json = config_;
    o.run.precision = model::Precision::bf16;
    o.run.rope_mode = rope::RopeMode::hf_bf16;
    o.windows_per_micro_batch = 2;
    o.grad_accum = 2;
    o.steps = steps;
    o.schedule.lr = 3e-3;
    o.schedule.warmup_steps = 2;
    o.seed = 7;
    o.quiet = true;
    return o;
  }
  static train::TrainResult train(const train::TrainOptions& o) {
    auto comm = dist::make_single_process_communicator();
    train::Trainer trainer(o, *comm);
    return trainer.run();
  }
  anchorctx::test::TempDir dir_;
  fs::path config_, data_;
};

TEST_F(TrainerTest, LossFallsAndMetricsAreWritten) {
  const train::TrainResult r = train(options("run", 12));
  ASSERT_EQ(r.steps.size(), 12u);
  EXPECT_LT(r.steps.back().loss, r.steps.front().loss - 0.5);
  EXPECT_NEAR(r.steps.front().loss, std::log(259.0), 0.3);  // random init: about uniform
  std::ifstream in(dir_.path() / "run" / "metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"], ++lines);
    EXPECT_DOUBLE_EQ(j["loss"].get<double>(), r.steps[lines - 1].loss);
  }
  EXPECT_EQ(lines, 12);
  EXPECT_EQ(train::list_checkpoints(dir_.path() / "run").size(), 1u);
  bool events = false;
  for (const auto& e : fs::directory_iterator(dir_.path() / "run"))
    events |= e.path().filename().string().starts_with("events.out.tfevents.");
  EXPECT_TRUE(events);
}

// N steps straight, or N/2, a checkpoint, a new process state resuming, N/2 more: the same
// losses and weights, bit for bit.
TEST_F(TrainerTest, ResumeIsBitIdentical) {
  const std::int64_t n = 8;
  const train::TrainResult straight = train(options("straight", n));

  train::TrainOptions first = options("split", n);
  first.save_every = n / 2;
  {
    auto comm = dist::make_single_process_communicator();
    train::Trainer trainer(first, *comm);
    // Stop after n/2 steps, as a killed run would (its checkpoint at n/2 is complete).
    try {
      trainer.run([&](const train::StepRecord& r) {
        if (r.step == n / 2) throw std::runtime_error("stop");
      });
    } catch (const std::runtime_error&) {
    }
  }
  ASSERT_TRUE(train::latest_checkpoint(first.out).has_value());
  train::TrainOptions second = first;
  second.resume = true;
  const train::TrainResult resumed = train(second);
  ASSERT_EQ(resumed.steps.size(), static_cast<std::size_t>(n / 2));
  for (std::size_t i = 0; i < resumed.steps.size(); ++i)
    EXPECT_EQ(resumed.steps[i].loss, straight.steps[n / 2 + i].loss) << "step " << i + n / 2 + 1;

  const auto a = train::load_checkpoint(*train::latest_checkpoint(dir_.path() / "straight"));
  const auto b = train::load_checkpoint(*train::latest_checkpoint(first.out));
  EXPECT_EQ(a.state.step, n);
  EXPECT_EQ(b.state.step, n);
  EXPECT_TRUE(a.params == b.params);
  EXPECT_TRUE(a.exp_avg == b.exp_avg);
  EXPECT_TRUE(a.exp_avg_sq == b.exp_avg_sq);

  // metrics.jsonl of the resumed run holds each step once.
  std::ifstream in(first.out / "metrics.jsonl");
  std::string line;
  std::int64_t expect = 0;
  while (std::getline(in, line))
    EXPECT_EQ(nlohmann::json::parse(line)["step"], ++expect);
  EXPECT_EQ(expect, n);
}

// One writer per run folder (issue 11): while a trainer lives, another on the same folder, a
// resume included, is refused naming the holder's pid; once it is gone the folder is free.
TEST_F(TrainerTest, ARunFolderHasOneWriter) {
  train::TrainOptions o = options("locked", 2);
  o.save_every = 1;
  train(o);
  auto comm = dist::make_single_process_communicator();
  {
    train::Trainer holder(options("locked", 3), *comm);
    for (const bool resume : {false, true}) {
      train::TrainOptions second = options("locked", 4);
      second.resume = resume;
      try {
        train::Trainer(second, *comm);
        ADD_FAILURE() << "a second trainer took the run folder (resume " << resume << ")";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("in use by another anchorctx process (pid " +
                                             std::to_string(::getpid())),
                  std::string::npos)
            << e.what();
      }
    }
  }
  train::TrainOptions resumed = options("locked", 3);
  resumed.resume = true;
  EXPECT_EQ(train(resumed).final_step, 3);
}

TEST_F(TrainerTest, NonFiniteLossStopsBeforeAnyCheckpoint) {
  train::TrainOptions o = options("nan", 3);
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(o, *comm);
  trainer.model().params()[trainer.model().layout().at("model.norm.weight").offset] =
      std::numeric_limits<float>::quiet_NaN();
  try {
    trainer.run();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(train::list_checkpoints(o.out).empty());
}

// A learning rate far beyond float's range: the first step's loss and gradients are finite, its
// update is not. The checkpoint after it is refused (it used to be written, pruning a good one,
// and could never be resumed).
TEST_F(TrainerTest, NonFiniteUpdateStopsBeforeItsCheckpoint) {
  train::TrainOptions o = options("blown", 3);
  o.schedule.lr = 1e39;
  o.schedule.warmup_steps = 0;
  o.save_every = 1;
  try {
    train(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("step 1: the update left"), std::string::npos) << what;
    EXPECT_NE(what.find("stopping before any checkpoint takes them"), std::string::npos) << what;
  }
  EXPECT_TRUE(train::list_checkpoints(o.out).empty());
}

// --skip-nonfinite leaves the weights as they were at a skipped step; a run whose every step is
// skipped trained nothing and fails (issue 11: it exited 0), writing no checkpoint.
TEST_F(TrainerTest, SkipNonFiniteLeavesWeightsUntouched) {
  train::TrainOptions o = options("skip", 2);
  o.skip_nonfinite = true;
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(o, *comm);
  auto params = trainer.model().params();
  params[trainer.model().layout().at("model.norm.weight").offset] =
      std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> before(params.begin(), params.end());
  std::vector<bool> skipped;
  try {
    trainer.run([&](const train::StepRecord& r) { skipped.push_back(r.skipped); });
    ADD_FAILURE() << "a run of skipped steps only ended without an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("every one of the 2 steps run was skipped"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(skipped, (std::vector<bool>{true}));  // the second step failed before on_step
  EXPECT_EQ(trainer.step(), 2);
  const float* p = trainer.model().params().data();
  EXPECT_EQ(0, std::memcmp(p, before.data(), before.size() * sizeof(float)));
  EXPECT_TRUE(train::list_checkpoints(o.out).empty());
}

// A diverged run under --skip-nonfinite stops after --max-consecutive-skips skipped steps in a
// row, with an error that says so (issue 11: it skipped 19 of 20 steps and exited 0).
TEST_F(TrainerTest, SkipNonFiniteStopsADivergedRun) {
  train::TrainOptions o = options("diverged", 20);
  o.skip_nonfinite = true;
  o.max_consecutive_skips = 3;
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(o, *comm);
  trainer.model().params()[trainer.model().layout().at("model.norm.weight").offset] =
      std::numeric_limits<float>::infinity();
  try {
    trainer.run();
    ADD_FAILURE() << "a diverged run ran to the end";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 3: 3 steps in a row skipped as non-finite "
                                         "(--max-consecutive-skips 3)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(trainer.step(), 3);
  o.max_consecutive_skips = 0;
  EXPECT_THROW(train::validate(o), Error);
}

TEST_F(TrainerTest, BadOptionsAreNamed) {
  train::TrainOptions o = options("bad", 3);
  o.grad_accum = 0;
  EXPECT_THROW(train::validate(o), Error);
  o = options("bad", 3);
  o.preset = "tiny";  // two model sources
  EXPECT_THROW(train::validate(o), Error);
  o = options("bad", 3);
  o.data = dir_.path() / "missing";
  auto comm = dist::make_single_process_communicator();
  EXPECT_THROW(train::Trainer(o, *comm), Error);
}

}  // namespace
