// The whole training model with --bf16-compute native (oneDNN GEMMs and the native bf16
// attention kernels) against the emulated path and float32 on the same weights and batch: an
// anchor-masked packed batch with grouped-query attention, one-token documents and documents
// crossing the kernels' tiles. Skipped, saying why, where the native path is unavailable.
//
// The tolerance argument. Native and emulated both compute in bf16; they differ in where the
// roundings fall (native rounds P and dS to bf16 before their products, and d_o before the
// attention backward). So the measure is against float32 math: native must stay about as close
// to the float32 model as the emulated bf16 model is (within 2x its distance, plus a floor for
// tensors the two paths happen to round alike), and never far from it in absolute terms.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/model/bf16_compute.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/layers.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"
#include "support/tiny_config.h"

namespace anchorctx::model {
namespace {

std::size_t sz(std::int64_t n) {
  return static_cast<std::size_t>(n);
}

// ||a - b|| / ||b|| over a whole tensor (norm-wise: single elements near zero do not dominate).
double relative_error(const float* a, const float* b, std::int64_t n) {
  double num = 0.0, den = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// The tests' tiny GQA model (2 layers, 4 query heads on 2 kv heads) widened to head_dim 32, so
// that the products fill whole bf16 pairs and AMX tiles.
LlamaConfig small_config() {
  LlamaConfig c = test::tiny_config();
  c.hidden_size = 128;
  c.head_dim = 32;
  c.intermediate_size = 256;
  return c;
}

struct Batch {
  std::vector<std::int32_t> ids, targets, positions;
  attention::BlockPlan plan;
  TrainBatch view() const { return {ids, targets, positions, &plan}; }
};

// The anchor mask over documents of 1, 70, 1, 130 and 57 tokens (the anchor is the first one):
// lengths off the tile size, one-token documents, documents across tile edges.
Batch anchor_batch() {
  const std::vector<std::int32_t> lengths{1, 70, 1, 130, 57};
  std::int32_t T = 0;
  for (const std::int32_t n : lengths)
    T += n;
  Batch b{{},
          {},
          {},
          attention::BlockPlan::build(attention::AttentionLayout::from_document_lengths(
                                          std::vector<std::vector<std::int32_t>>{lengths}, 0),
                                      attention::MaskKind::anchor)};
  for (std::int32_t t = 0; t < T; ++t) {
    b.ids.push_back(static_cast<std::int32_t>((t * 37 + 11) % 256));
    b.positions.push_back(t);
  }
  for (std::int32_t t = 0; t < T; ++t)
    b.targets.push_back(t + 1 < T ? b.ids[sz(t + 1)] : -1);
  return b;
}

struct Result {
  double loss = 0.0;
  std::vector<float> grads;
};

Result run_model(const LlamaConfig& config, Precision precision, Bf16Compute compute,
                 const Batch& batch, int threads = 2) {
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
  RunOptions run;
  run.precision = precision;
  run.rope_mode = default_rope_mode(precision);
  run.bf16_compute = compute;
  run.threads = threads;
  LlamaTrainModel model(config, run);
  init_parameters(model.layout(), config, 11, model.params());
  model.zero_grads();
  const double scale = 1.0 / static_cast<double>(batch.ids.size() - 1);
  const LossSum l = model.forward_backward(batch.view(), scale);
  omp_set_num_threads(previous);
  return {l.loss * scale, {model.grads().begin(), model.grads().end()}};
}

class NativeTrainModel : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!native_bf16_available(&why)) GTEST_SKIP() << "native bf16 unavailable here: " << why;
  }
};

TEST_F(NativeTrainModel, LossAndGradientsStayAsCloseToFloat32AsTheEmulatedPath) {
  const LlamaConfig config = small_config();
  const Batch batch = anchor_batch();
  const Result f32 = run_model(config, Precision::fp32, Bf16Compute::emulated, batch);
  const Result emulated = run_model(config, Precision::bf16, Bf16Compute::emulated, batch);
  const Result native = run_model(config, Precision::bf16, Bf16Compute::native, batch);
  for (const float g : native.grads)
    ASSERT_TRUE(std::isfinite(g));
  std::printf("loss: fp32 %.6f, emulated %.6f, native %.6f\n", f32.loss, emulated.loss,
              native.loss);
  EXPECT_NEAR(native.loss, f32.loss, 2.0 * std::abs(emulated.loss - f32.loss) + 2e-3 * f32.loss);

  const LlamaTrainModel shapes(config, RunOptions{});
  for (const ParameterInfo& p : shapes.layout().params()) {
    const std::size_t o = p.offset;
    const auto n_elems = static_cast<std::int64_t>(p.size);
    const double e = relative_error(emulated.grads.data() + o, f32.grads.data() + o, n_elems);
    const double n = relative_error(native.grads.data() + o, f32.grads.data() + o, n_elems);
    const double ne = relative_error(native.grads.data() + o, emulated.grads.data() + o, n_elems);
    std::printf("  %-40s emulated %.2e  native %.2e  (native vs emulated %.2e)\n", p.name.c_str(),
                e, n, ne);
    EXPECT_LE(n, 2.0 * e + 1e-2) << p.name;
    EXPECT_LT(n, 0.1) << p.name;
  }
}

TEST_F(NativeTrainModel, GradientsAreBitIdenticalAtOneAndTwoThreads) {
  set_thread_invariant_gemms(true);
  struct Restore {
    ~Restore() { set_thread_invariant_gemms(false); }
  } restore;
  const LlamaConfig config = small_config();
  const Batch batch = anchor_batch();
  const Result one = run_model(config, Precision::bf16, Bf16Compute::native, batch, 1);
  const Result two = run_model(config, Precision::bf16, Bf16Compute::native, batch, 2);
  EXPECT_EQ(one.loss, two.loss);
  ASSERT_EQ(one.grads.size(), two.grads.size());
  EXPECT_EQ(0, std::memcmp(one.grads.data(), two.grads.data(), one.grads.size() * sizeof(float)));
}

}  // namespace
}  // namespace anchorctx::model
