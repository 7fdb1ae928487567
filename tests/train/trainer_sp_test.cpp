// The trainer with sequence parallelism, ranks as threads of dist::ThreadGroup: 20 steps at 4
// ranks (sp 2 x 2 data-parallel replicas, one micro-batch each) track one process reading the
// same windows as 2 micro-batches, and --sp that the world cannot hold is refused before any
// work, naming both numbers.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/dist/thread_group.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/train/trainer.h"
#include "support/temp_dir.h"
#include "support/tiny_config.h"

namespace {

namespace fs = std::filesystem;
using namespace anchorctx;

struct ThreadInvariantGemms {
  ThreadInvariantGemms() { model::set_thread_invariant_gemms(true); }
  ~ThreadInvariantGemms() { model::set_thread_invariant_gemms(false); }
};

class TrainerSequenceParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.path() / "config.json";
    model::save_config(test::tiny_config(), config_);
    // Windows of 300 tokens: shards of 256 and 44 tokens at sp 2 (uneven).
    data::BuiltinCorpusOptions corpus;
    corpus.documents = 120;
    corpus.median_chars = 150;
    corpus.min_chars = 1;
    corpus.max_chars = 600;
    std::string jsonl;
    for (const std::string& d : data::builtin_corpus(corpus))
      jsonl += nlohmann::json{{"text", d}}.dump() + "\n";
    std::ofstream(dir_.path() / "corpus.jsonl") << jsonl;
    data::PackConfig pack;
    pack.inputs = {(dir_.path() / "corpus.jsonl").string()};
    pack.out = (dir_.path() / "data").string();
    pack.seq_len = 300;
    pack.quiet = true;
    pack.threads = 1;
    data::pack_dataset(pack);
  }
  train::TrainOptions options(const std::string& run) const {
    train::TrainOptions o;
    o.data = dir_.path() / "data";
    o.out = dir_.path() / run;
    o.config_json = config_;
    o.steps = 20;
    o.schedule.lr = 3e-3;
    o.schedule.warmup_steps = 2;
    o.seed = 3;
    o.quiet = true;
    o.tensorboard = false;
    o.copy_tokenizer = false;
    o.run.threads = 1;
    return o;
  }
  test::TempDir dir_;
  fs::path config_;
};

TEST_F(TrainerSequenceParallel, FourRanksTrackOneProcessFor20Steps) {
  const ThreadInvariantGemms invariant;  // as --sp turns it on: the one process alike
  train::TrainOptions one = options("one");
  one.grad_accum = 2;
  auto comm = dist::make_single_process_communicator();
  const train::TrainResult reference = train::Trainer(one, *comm).run();

  train::TrainOptions sp = options("sp");
  sp.sp = 2;
  std::vector<train::TrainResult> results(4);
  dist::ThreadGroup world(4);
  world.run([&](dist::Communicator& c) {
    omp_set_num_threads(1);  // one thread per rank, as under mpirun on this machine
    train::Trainer trainer(sp, c);
    results[static_cast<std::size_t>(c.rank())] = trainer.run();
  });
  ASSERT_EQ(reference.steps.size(), 20u);
  double worst = 0.0;
  for (const train::TrainResult& r : results) {
    ASSERT_EQ(r.steps.size(), 20u);
    for (std::size_t s = 0; s < 20; ++s) {
      // Same windows, same global target count; gradients differ by the order of float32
      // sums only, which 20 AdamW steps at lr 3e-3 keep far under 1e-5 of the loss.
      EXPECT_NEAR(r.steps[s].loss, reference.steps[s].loss, 1e-5 * reference.steps[s].loss)
          << "step " << s + 1;
      EXPECT_EQ(r.steps[s].tokens, reference.steps[s].tokens) << "step " << s + 1;
      worst = std::max(worst, std::abs(r.steps[s].loss / reference.steps[s].loss - 1.0));
    }
    // Every rank computes the same step record (sums in rank order).
    EXPECT_EQ(r.steps.back().loss, results[0].steps.back().loss);
  }
  std::printf("[ sp 2 x dp 2 ] largest relative loss difference over 20 steps: %.3g\n", worst);
  // The loss fell: the run trained.
  EXPECT_LT(results[0].steps.back().loss, results[0].steps.front().loss - 0.3);
  EXPECT_EQ(train::TrainOptions(sp).to_json().at("sp"), 2);
}

TEST_F(TrainerSequenceParallel, SpThatTheWorldCannotHoldIsRefusedNamingTheNumbers) {
  train::TrainOptions o = options("refused");
  o.sp = 2;
  auto comm = dist::make_single_process_communicator();
  try {
    train::Trainer trainer(o, *comm);
    FAIL() << "--sp 2 accepted in one process";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("--sp 2"), std::string::npos) << m;
    EXPECT_NE(m.find("(1)"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(dir_.path() / "refused"));
}

}  // namespace
