// The pieces of data parallelism that one process can check (the multi-process runs are in
// tests/mpi/): the window each replica reads, AdamW on a slice, the norm from block sums, and
// the sharded optimizer step equal to the whole-buffer step bit for bit.
#include "anchorctx/train/data_parallel_optimizer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "anchorctx/dist/communicator.h"
#include "anchorctx/dist/world.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/train/data_shard.h"
#include "anchorctx/train/optimizer.h"
#include "support/tiny_config.h"

namespace anchorctx::train {
namespace {

// Replica d of N with grad-accum A reads, at every step, the windows one process reads with
// grad-accum N x A as its micro-batches d*A .. d*A+A-1; the replicas together read each window
// of the global batch once.
TEST(DataShard, ReplicasReadTheMicroBatchesOfOneProcess) {
  for (int dp = 1; dp <= 4; ++dp) {
    for (std::int64_t accum = 1; accum <= 3; ++accum) {
      const DataShard one{2, accum * dp, 0, 1};
      std::set<std::uint64_t> seen;
      for (int d = 0; d < dp; ++d) {
        const DataShard replica{2, accum, d, dp};
        ASSERT_EQ(replica.global_batch(), one.global_batch());
        for (std::uint64_t step_cursor : {0ull, 24ull, 240ull})
          for (std::int64_t m = 0; m < accum; ++m)
            for (std::int64_t w = 0; w < 2; ++w) {
              const std::uint64_t c = replica.cursor(step_cursor, m, w);
              EXPECT_EQ(c, one.cursor(step_cursor, d * accum + m, w));
              EXPECT_GE(c, step_cursor);
              EXPECT_LT(c, step_cursor + replica.global_batch());
              if (step_cursor == 0) seen.insert(c);
            }
      }
      EXPECT_EQ(seen.size(), one.global_batch()) << "dp " << dp << " accum " << accum;
    }
  }
}

std::vector<float> random_values(std::size_t n, std::uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v)
    x = dist(rng);
  return v;
}

// The tiny model's layout (decayed and undecayed parameters) over several norm blocks.
model::ParameterLayout layout_for_test() {
  model::LlamaConfig c = test::tiny_config();
  c.hidden_size = 64;
  c.intermediate_size = 256;
  return model::ParameterLayout::for_config(c);
}

TEST(AdamW, SlicesGiveTheWholeBuffersBits) {
  const model::ParameterLayout layout = layout_for_test();
  const std::size_t n = layout.total();
  ASSERT_GT(n, 3 * kGradientNormBlock);
  std::vector<float> whole = random_values(n, 1, 0.05f), sliced = whole;
  AdamW full(layout, {});
  // Slice edges inside parameters and off any vector width.
  const std::vector<std::size_t> edges = {0, 13, kGradientNormBlock + 5, n / 2 + 3, n};
  std::vector<AdamW> parts;
  for (std::size_t k = 0; k + 1 < edges.size(); ++k)
    parts.emplace_back(layout, AdamWOptions{}, edges[k], edges[k + 1]);
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> g = random_values(n, 10 + static_cast<std::uint32_t>(step), 0.01f);
    full.step(whole, g, 1e-2);
    for (std::size_t k = 0; k + 1 < edges.size(); ++k) {
      const std::size_t len = edges[k + 1] - edges[k];
      parts[k].step(std::span<float>(sliced).subspan(edges[k], len),
                    std::span<const float>(g).subspan(edges[k], len), 1e-2);
    }
  }
  EXPECT_EQ(std::memcmp(whole.data(), sliced.data(), n * sizeof(float)), 0);
  EXPECT_THROW(AdamW(layout, {}, 10, 5), Error);
  EXPECT_THROW(AdamW(layout, {}, 0, n + 1), Error);
}

TEST(GradientNorm, BlockSumsOfShardsGiveTheSameNorm) {
  const std::vector<float> g = random_values(5 * kGradientNormBlock + 77, 3, 1.0f);
  std::vector<double> sums;
  for (std::size_t begin = 0; begin < g.size(); begin += 2 * kGradientNormBlock) {
    const std::size_t len = std::min(2 * kGradientNormBlock, g.size() - begin);
    const std::vector<double> part =
        gradient_block_sums(std::span<const float>(g).subspan(begin, len));
    sums.insert(sums.end(), part.begin(), part.end());
  }
  const double a = gradient_norm_from_block_sums(sums), b = gradient_norm(g);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
}

// One process: sharding over a group of one changes nothing, bit for bit, clipping included.
TEST(DataParallelOptimizer, ShardedOverOneRankEqualsReplicated) {
  const model::ParameterLayout layout = layout_for_test();
  const std::size_t n = layout.total();
  auto comm = dist::make_single_process_communicator();
  DataParallelOptimizer plain(layout, {}, *comm, false), sharded(layout, {}, *comm, true);
  EXPECT_EQ(sharded.state_bytes(), 2 * sizeof(float) * n);
  std::vector<float> p1 = random_values(n, 5, 0.05f), p2 = p1;
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g1 = random_values(n, 20 + static_cast<std::uint32_t>(step), 0.5f), g2 = g1;
    const double n1 = plain.reduce_and_clip(g1, 1.0), n2 = sharded.reduce_and_clip(g2, 1.0);
    EXPECT_EQ(n1, n2);
    EXPECT_GT(n1, 1.0);  // clipping happens
    plain.step(p1, g1, 1e-2);
    sharded.step(p2, g2, 1e-2);
  }
  EXPECT_EQ(std::memcmp(p1.data(), p2.data(), n * sizeof(float)), 0);
  std::vector<float> m1, v1, m2, v2;
  plain.gather_state(m1, v1);
  sharded.gather_state(m2, v2);
  EXPECT_EQ(m1, m2);
  EXPECT_EQ(v1, v2);
  EXPECT_EQ(sharded.steps(), 3);
}

TEST(World, LauncherSizeFromTheEnvironment) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"})
    ASSERT_EQ(std::getenv(name), nullptr) << name << " is set: this test must not run under mpirun";
  EXPECT_EQ(dist::launcher_world_size(), std::nullopt);
  // Without a launcher the world is the single process.
  EXPECT_EQ(dist::make_world_communicator()->world_size(), 1);
  setenv("PMI_SIZE", "3", 1);
  EXPECT_EQ(dist::launcher_world_size(), 3);
  setenv("PMI_SIZE", "three", 1);
  EXPECT_EQ(dist::launcher_world_size(), std::nullopt);
  unsetenv("PMI_SIZE");
}

}  // namespace
}  // namespace anchorctx::train
