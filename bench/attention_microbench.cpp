// Micro-benchmarks of the attention part: building the block plan for a long anchor layout,
// and the forward and backward kernels on a small shape in each dtype. The end-to-end numbers
// (against the sgemm yardstick) come from `anchorctx bench attention`; these track the pieces.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/attention/kernels.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/core/bf16.h"
#include "anchorctx/core/dtype.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/doc_lengths.h"

namespace {

namespace attn = anchorctx::attention;
namespace core = anchorctx::core;
namespace data = anchorctx::data;

// One sequence of `seq_len` tokens: [anchor] then documents drawn from `docs` (by default the
// lognormal law of the anchor targets: median 1024, sigma 1).
attn::AttentionLayout anchor_layout(std::int32_t seq_len, const char* docs = "lognormal:1024:1.0") {
  const auto spec = data::parse_doc_length_spec(docs);
  return attn::AttentionLayout::from_document_lengths(
      data::generate_doc_lengths(spec, 1, seq_len, /*seed=*/7, /*prefix_len=*/1), 1);
}

void BM_BlockPlanBuild(benchmark::State& state) {
  const auto mask = static_cast<attn::MaskKind>(state.range(1));
  const attn::AttentionLayout layout = anchor_layout(static_cast<std::int32_t>(state.range(0)));
  for (auto _ : state) {
    attn::BlockPlan plan = attn::BlockPlan::build(layout, mask);
    benchmark::DoNotOptimize(plan.visited_pairs());
  }
  state.SetLabel(std::string(attn::to_string(mask)));
}
BENCHMARK(BM_BlockPlanBuild)
    ->Args({65536, static_cast<int>(attn::MaskKind::anchor)})
    ->Args({65536, static_cast<int>(attn::MaskKind::causal)})
    ->Unit(benchmark::kMicrosecond);

// The kernels run on OpenMP threads, so the main thread's CPU time means nothing: iterations are
// timed by wall clock (UseManualTime), and the FLOP/s counters divide by that time.

// A tensor of the benchmark's dtype as raw storage (operator new aligns it for floats).
struct Tensor {
  Tensor(std::size_t n, core::DType dtype) : dtype(dtype), bytes(n * core::dtype_size(dtype)) {}

  void fill_normal(std::mt19937& rng) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const std::size_t n = bytes.size() / core::dtype_size(dtype);
    for (std::size_t i = 0; i < n; ++i) {
      const float x = dist(rng);
      if (dtype == core::DType::f32) {
        std::memcpy(bytes.data() + 4 * i, &x, 4);
      } else {
        const std::uint16_t b = core::float_to_bf16_bits(x);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
    }
  }
  void* data() { return bytes.data(); }

  core::DType dtype;
  std::vector<std::byte> bytes;
};

// Random tensors of a small attention problem: T tokens, 4 query heads over 2 kv heads.
struct Problem {
  static constexpr int kHeadsQ = 4;
  static constexpr int kHeadsKv = 2;

  Problem(std::int32_t tokens, int head_dim, core::DType dtype)
      // Documents short enough (median 256) that the anchor mask skips work at 2048 tokens.
      : plan(attn::BlockPlan::build(anchor_layout(tokens, "lognormal:256:1.0"),
                                    attn::MaskKind::anchor)),
        dims{kHeadsQ, kHeadsKv, head_dim},
        dtype(dtype),
        q(nq(), dtype),
        out(nq(), dtype),
        dout(nq(), dtype),
        dq(nq(), dtype),
        k(nkv(), dtype),
        v(nkv(), dtype),
        dk(nkv(), dtype),
        dv(nkv(), dtype),
        lse(static_cast<std::size_t>(tokens) * kHeadsQ) {
    std::mt19937 rng(11);
    for (Tensor* t : {&q, &k, &v, &dout})
      t->fill_normal(rng);
  }

  std::size_t tokens() const { return static_cast<std::size_t>(plan.layout().total_tokens()); }
  std::size_t nq() const { return tokens() * kHeadsQ * static_cast<std::size_t>(dims.head_dim); }
  std::size_t nkv() const { return tokens() * kHeadsKv * static_cast<std::size_t>(dims.head_dim); }

  attn::ForwardTensors forward_tensors() {
    return {dtype, q.data(), k.data(), v.data(), out.data(), lse.data()};
  }
  attn::BackwardTensors backward_tensors() {
    return {dtype,       q.data(),   k.data(),  v.data(),  out.data(),
            dout.data(), lse.data(), dq.data(), dk.data(), dv.data()};
  }

  // Declaration order matters: plan and dims size the tensors below.
  attn::BlockPlan plan;
  attn::AttentionDims dims;
  core::DType dtype;
  Tensor q, out, dout, dq, k, v, dk, dv;
  std::vector<float> lse;
};

double forward_flops(const Problem& p) {
  return 4.0 * p.dims.head_dim * p.dims.heads_q *
         static_cast<double>(p.plan.layout().visible_pairs(p.plan.mask()));
}

void BM_Forward(benchmark::State& state) {
  Problem p(static_cast<std::int32_t>(state.range(0)), static_cast<int>(state.range(1)),
            static_cast<core::DType>(state.range(2)));
  const auto tensors = p.forward_tensors();
  attn::forward(p.plan, p.dims, tensors);  // warm-up
  for (auto _ : state) {
    core::Stopwatch watch;
    attn::forward(p.plan, p.dims, tensors);
    state.SetIterationTime(watch.elapsed_s());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(forward_flops(p), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(core::to_string(p.dtype)));
}

void BM_Backward(benchmark::State& state) {
  Problem p(static_cast<std::int32_t>(state.range(0)), static_cast<int>(state.range(1)),
            static_cast<core::DType>(state.range(2)));
  attn::forward(p.plan, p.dims, p.forward_tensors());
  const auto tensors = p.backward_tensors();
  attn::backward(p.plan, p.dims, tensors);  // warm-up
  for (auto _ : state) {
    core::Stopwatch watch;
    attn::backward(p.plan, p.dims, tensors);
    state.SetIterationTime(watch.elapsed_s());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.5 * forward_flops(p), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(core::to_string(p.dtype)));
}

constexpr int kF32 = static_cast<int>(core::DType::f32);
constexpr int kBF16 = static_cast<int>(core::DType::bf16);
BENCHMARK(BM_Forward)
    ->Args({2048, 64, kF32})
    ->Args({2048, 64, kBF16})
    ->Args({2048, 128, kF32})
    ->Args({2048, 128, kBF16})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();
BENCHMARK(BM_Backward)
    ->Args({2048, 64, kF32})
    ->Args({2048, 64, kBF16})
    ->Args({2048, 128, kF32})
    ->Args({2048, 128, kBF16})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

}  // namespace
