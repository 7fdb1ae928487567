// BPE encode speed of a HuggingFace tokenizer.json on real text, one thread.
//   ANCHORCTX_BPE_TOKENIZER=path/tokenizer.json ANCHORCTX_BPE_CORPUS=corpus.jsonl
//   anchorctx_microbench --benchmark_filter=HfBpe
// The corpus is JSONL with a "text" field (../shared/data/corpus/c4_demo.jsonl). Compared with
// the `tokenizers` library by tools/bench/bpe_speed.py.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "anchorctx/data/tokenizer.h"

namespace {

std::vector<std::string> load_texts(const char* path) {
  std::vector<std::string> texts;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  return texts;
}

void run(benchmark::State& state, bool warm) {
  const char* tokenizer_path = std::getenv("ANCHORCTX_BPE_TOKENIZER");
  const char* corpus_path = std::getenv("ANCHORCTX_BPE_CORPUS");
  if (tokenizer_path == nullptr || corpus_path == nullptr) {
    state.SkipWithError("set ANCHORCTX_BPE_TOKENIZER and ANCHORCTX_BPE_CORPUS");
    return;
  }
  const std::vector<std::string> texts = load_texts(corpus_path);
  std::size_t bytes = 0;
  for (const std::string& t : texts)
    bytes += t.size();
  auto tok = anchorctx::data::load_tokenizer(tokenizer_path);
  if (warm)
    for (const std::string& t : texts)
      benchmark::DoNotOptimize(tok->encode(t));
  std::size_t tokens = 0;
  for (auto _ : state) {
    if (!warm) {
      // A fresh instance starts with an empty word cache.
      state.PauseTiming();
      tok = anchorctx::data::load_tokenizer(tokenizer_path);
      state.ResumeTiming();
    }
    tokens = 0;
    for (const std::string& t : texts)
      tokens += tok->encode(t).size();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_HfBpeEncodeWarm(benchmark::State& state) {
  run(state, true);
}
void BM_HfBpeEncodeCold(benchmark::State& state) {
  run(state, false);
}
BENCHMARK(BM_HfBpeEncodeWarm)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_HfBpeEncodeCold)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
