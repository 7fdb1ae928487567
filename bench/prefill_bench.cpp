// Evaluation's inference path against the training forward, on the `reference` preset
// (random initialisation; speed does not depend on the weights), one sequence of T tokens,
// causal mask:
//   TrainForward/T  LlamaTrainModel::forward with every token targeted (the training forward)
//   PrefillPpl/T    eval::Prefill with every token targeted (the ppl task's work)
//   PrefillGen/T    eval::Prefill keeping the KV cache and the last logits (a needle prompt)
//   Decode/T        16 greedy tokens decoded with the KV cache after a T-token prefill
//   DecodeBatch/T/B B prompts of T tokens prefilled together, then 16 greedy tokens each decoded
//                   together (eval's batches: one pass over the weights per step for all B)
//   PrefillBatched/T   eight prompts of T / 8 tokens as one varlen prefill (eval's batches)
//   PrefillOneByOne/T  the same eight prompts prefilled one at a time
// Counter tokens_per_s: T (or the decoded tokens) per second.
//   anchorctx_microbench --benchmark_filter='TrainForward|Prefill|Decode'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <vector>

#include "anchorctx/core/timing.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/rope/positions.h"
#include "anchorctx/train/batch.h"

namespace {

using namespace anchorctx;

struct Setup {
  model::LlamaConfig config = model::preset("reference");
  std::unique_ptr<model::LlamaTrainModel> train;
  model::LlamaModel weights;
};

Setup& setup() {
  static Setup s = [] {
    Setup s;
    s.train = std::make_unique<model::LlamaTrainModel>(s.config, model::RunOptions{});
    model::init_parameters(s.train->layout(), s.config, 1, s.train->params());
    const auto get = [&](const std::string& name) {
      const model::ParameterInfo& p = s.train->layout().at(name);
      return std::vector<float>(
          s.train->params().begin() + static_cast<std::ptrdiff_t>(p.offset),
          s.train->params().begin() + static_cast<std::ptrdiff_t>(p.offset + p.size));
    };
    s.weights.config = s.config;
    s.weights.weights.embed_tokens = get("model.embed_tokens.weight");
    s.weights.weights.final_norm = get("model.norm.weight");
    s.weights.weights.lm_head = get("lm_head.weight");
    for (std::int64_t l = 0; l < s.config.num_hidden_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      model::LlamaLayerWeights w;
      w.input_norm = get(p + "input_layernorm.weight");
      w.q_proj = get(p + "self_attn.q_proj.weight");
      w.k_proj = get(p + "self_attn.k_proj.weight");
      w.v_proj = get(p + "self_attn.v_proj.weight");
      w.o_proj = get(p + "self_attn.o_proj.weight");
      w.post_attention_norm = get(p + "post_attention_layernorm.weight");
      w.gate_proj = get(p + "mlp.gate_proj.weight");
      w.up_proj = get(p + "mlp.up_proj.weight");
      w.down_proj = get(p + "mlp.down_proj.weight");
      s.weights.weights.layers.push_back(std::move(w));
    }
    return s;
  }();
  return s;
}

std::vector<std::int32_t> tokens(std::int64_t n) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < t.size(); ++i)
    t[i] = static_cast<std::int32_t>(3 + (i * 7919) % 31000);
  return t;
}

train::Batch batch(std::int64_t T) {
  const std::vector<std::int32_t> t = tokens(T + 1);
  const train::RawWindow w{t, {}, {}};
  return train::make_batch({&w, 1}, data::AnchorMode::none,
                           {attention::MaskKind::causal, rope::PositionPolicy::global, false});
}

void TrainForward(benchmark::State& state) {
  Setup& s = setup();
  const train::Batch b = batch(state.range(0));
  for (auto _ : state)
    benchmark::DoNotOptimize(s.train->forward(b.view()));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.range(0)), benchmark::Counter::kIsRate);
}

void PrefillPpl(benchmark::State& state) {
  Setup& s = setup();
  const train::Batch b = batch(state.range(0));
  eval::Prefill prefill(s.weights);
  for (auto _ : state)
    benchmark::DoNotOptimize(
        prefill.run({b.input_ids, b.position_ids, &b.plan, b.targets, false, false}));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.range(0)), benchmark::Counter::kIsRate);
}

void PrefillGen(benchmark::State& state) {
  Setup& s = setup();
  const train::Batch b = batch(state.range(0));
  eval::Prefill prefill(s.weights);
  for (auto _ : state)
    benchmark::DoNotOptimize(prefill.run({b.input_ids, b.position_ids, &b.plan, {}, true, true}));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.range(0)), benchmark::Counter::kIsRate);
}

// Eight prompts of T / 8 tokens each (for PrefillBatched, PrefillOneByOne).
std::vector<std::vector<std::int32_t>> eight_prompts(std::int64_t T) {
  std::vector<std::vector<std::int32_t>> p;
  const std::vector<std::int32_t> all = tokens(T);
  for (std::int64_t i = 0; i < 8; ++i)
    p.emplace_back(all.begin() + i * (T / 8), all.begin() + (i + 1) * (T / 8));
  return p;
}

// The eight prompts as one varlen prefill (eval's batches), keeping caches and last logits.
void PrefillBatched(benchmark::State& state) {
  Setup& s = setup();
  const auto prompts = eight_prompts(state.range(0));
  std::vector<std::int64_t> lengths;
  std::vector<std::int32_t> ids, positions;
  for (const auto& p : prompts) {
    lengths.push_back(static_cast<std::int64_t>(p.size()));
    ids.insert(ids.end(), p.begin(), p.end());
    for (std::size_t i = 0; i < p.size(); ++i)
      positions.push_back(static_cast<std::int32_t>(i));
  }
  const attention::BlockPlan plan = eval::causal_plan(lengths);
  eval::Prefill prefill(s.weights);
  for (auto _ : state)
    benchmark::DoNotOptimize(prefill.run({ids, positions, &plan, {}, true, true}));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(ids.size()), benchmark::Counter::kIsRate);
}

// The same eight prompts prefilled one at a time.
void PrefillOneByOne(benchmark::State& state) {
  Setup& s = setup();
  const auto prompts = eight_prompts(state.range(0));
  const std::int64_t n = static_cast<std::int64_t>(prompts[0].size());
  std::vector<std::int32_t> positions(static_cast<std::size_t>(n));
  std::iota(positions.begin(), positions.end(), 0);
  const attention::BlockPlan plan = eval::causal_plan(n);
  eval::Prefill prefill(s.weights);
  for (auto _ : state)
    for (const auto& p : prompts)
      benchmark::DoNotOptimize(prefill.run({p, positions, &plan, {}, true, true}));
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(n * 8), benchmark::Counter::kIsRate);
}

// Runs `greedy` (one call of the engine's) per iteration; counter tokens_per_s over the decode
// steps alone (the engine's own clock), not the prefill before them.
template <class Greedy>
void measure_decode(benchmark::State& state, eval::Engine& engine, Greedy greedy) {
  double decode_s = 0.0;
  std::int64_t decoded = 0;
  for (auto _ : state) {
    const eval::EngineStats before = engine.stats();
    benchmark::DoNotOptimize(greedy());
    decode_s += engine.stats().decode_s - before.decode_s;
    decoded += engine.stats().decode_tokens - before.decode_tokens;
  }
  state.counters["tokens_per_s"] = static_cast<double>(decoded) / decode_s;
}

void Decode(benchmark::State& state) {
  eval::Engine engine(setup().weights);
  const std::vector<std::int32_t> prompt = tokens(state.range(0));
  measure_decode(state, engine, [&] { return engine.greedy(prompt, 16, {}); });
}

void DecodeBatch(benchmark::State& state) {
  eval::Engine engine(setup().weights);
  std::vector<std::vector<std::int32_t>> prompts;
  for (std::int64_t b = 0; b < state.range(1); ++b) {
    std::vector<std::int32_t> p = tokens(state.range(0));
    std::rotate(p.begin() + 1, p.begin() + 1 + b, p.end());  // different prompts, same length
    prompts.push_back(std::move(p));
  }
  const std::vector<std::span<const std::int32_t>> spans(prompts.begin(), prompts.end());
  measure_decode(state, engine, [&] { return engine.greedy_batch(spans, 16, {}); });
}

// 32K: the longest length; the training forward there keeps about 8 GB of activations.
BENCHMARK(TrainForward)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(32768)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(PrefillPpl)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(32768)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(PrefillGen)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(32768)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
BENCHMARK(PrefillBatched)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(PrefillOneByOne)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(Decode)->Arg(4096)->Arg(16384)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(DecodeBatch)
    ->Args({2048, 1})
    ->Args({2048, 4})
    ->Args({2048, 8})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
