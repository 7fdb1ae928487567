#include "anchorctx/eval/engine.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "anchorctx/core/error.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/model/generation.h"

namespace anchorctx::eval {

attention::BlockPlan causal_plan(std::int64_t tokens) {
  require(tokens > 0 && tokens < (std::int64_t{1} << 31), "causal_plan: {} tokens", tokens);
  return attention::BlockPlan::build(
      attention::AttentionLayout::from_document_lengths({{static_cast<std::int32_t>(tokens)}}, 0),
      attention::MaskKind::causal);
}

attention::BlockPlan causal_plan(const std::vector<std::int64_t>& tokens) {
  std::vector<std::vector<std::int32_t>> docs;
  std::int64_t total = 0;
  for (const std::int64_t t : tokens) {
    require(t > 0, "causal_plan: an empty sequence");
    total += t;
    docs.push_back({static_cast<std::int32_t>(t)});
  }
  require(!docs.empty() && total < (std::int64_t{1} << 31), "causal_plan: {} sequences, {} tokens",
          docs.size(), total);
  return attention::BlockPlan::build(attention::AttentionLayout::from_document_lengths(docs, 0),
                                     attention::MaskKind::causal);
}

namespace {

// bf16 precision: the model's weights rounded once, for the decoder and the prefill alike (the
// prefill then needs no rounded copy of its own).
model::LlamaModel for_precision(model::LlamaModel model, model::Precision precision) {
  if (precision == model::Precision::bf16) model::round_to_bf16(model.weights);
  return model;
}

}  // namespace

Engine::Engine(model::LlamaModel model, PrefillOptions options)
    : decoder_(for_precision(std::move(model), options.precision)), prefill_(decoder_, options) {}

// Greedy answers of the decoder's sequences, all decoded together: each step feeds every
// sequence still answering (one pass over the weights for all of them), a sequence leaves the
// batch at its stop id or its max_new-th token. logits [sequences, V]: each one's first.
std::vector<std::vector<std::int32_t>> Engine::decode(std::span<const float> logits,
                                                      std::int64_t max_new,
                                                      std::span<const std::int32_t> stop_ids) {
  const std::int64_t V = config().vocab_size, n = decoder_.sequences();
  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(n));
  const core::Stopwatch watch;
  // Each step's logits are read whole before the next step overwrites them: no copy.
  std::span<const float> current = logits;
  std::vector<model::DecodeFeed> feeds;
  for (std::int64_t s = 0; s < n; ++s)
    feeds.push_back({s, 0});
  for (;;) {
    std::vector<model::DecodeFeed> next_feeds;
    for (std::size_t i = 0; i < feeds.size(); ++i) {
      std::vector<std::int32_t>& answer = out[static_cast<std::size_t>(feeds[i].sequence)];
      const std::int32_t next = model::argmax(
          current.subspan(i * static_cast<std::size_t>(V), static_cast<std::size_t>(V)));
      if (static_cast<std::int64_t>(answer.size()) >= max_new ||
          std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end())
        continue;
      answer.push_back(next);
      if (static_cast<std::int64_t>(answer.size()) < max_new)
        next_feeds.push_back({feeds[i].sequence, next});
    }
    feeds = std::move(next_feeds);
    if (feeds.empty()) break;
    current = decoder_.step(feeds);
    stats_.decode_tokens += static_cast<std::int64_t>(feeds.size());
  }
  stats_.decode_s += watch.elapsed_s();
  return out;
}

// One prefill keeping what decoding needs (the KV cache, the last logits), timed into the stats.
PrefillResult Engine::prefill_for_decode(std::span<const std::int32_t> ids,
                                         std::span<const std::int32_t> positions,
                                         const attention::BlockPlan& plan) {
  PrefillRequest request;
  request.input_ids = ids;
  request.position_ids = positions;
  request.plan = &plan;
  request.keep_cache = true;
  request.last_logits = true;
  const core::Stopwatch watch;
  PrefillResult r = prefill_.run(request);
  stats_.prefill_s += watch.elapsed_s();
  stats_.prefill_tokens += static_cast<std::int64_t>(ids.size());
  return r;
}

std::vector<std::int32_t> Engine::greedy(std::span<const std::int32_t> prompt, std::int64_t max_new,
                                         std::span<const std::int32_t> stop_ids) {
  require(!prompt.empty(), "greedy: empty prompt");
  const std::int64_t T = static_cast<std::int64_t>(prompt.size());
  const attention::BlockPlan plan = causal_plan(T);
  std::vector<std::int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  PrefillResult r = prefill_for_decode(prompt, positions, plan);
  std::vector<model::KvCache> cache(1);
  cache[0] = {std::move(r.keys), std::move(r.values), T};
  decoder_.adopt_caches(std::move(cache), max_new);
  return std::move(decode(r.last_logits, max_new, stop_ids)[0]);
}

std::vector<std::vector<std::int32_t>> Engine::greedy_batch(
    const std::vector<std::span<const std::int32_t>>& prompts, std::int64_t max_new,
    std::span<const std::int32_t> stop_ids) {
  if (prompts.empty()) return {};
  std::vector<std::int64_t> lengths;
  std::vector<std::int32_t> ids, positions;
  for (const auto& p : prompts) {
    require(!p.empty(), "greedy_batch: an empty prompt");
    lengths.push_back(static_cast<std::int64_t>(p.size()));
    ids.insert(ids.end(), p.begin(), p.end());
    for (std::size_t i = 0; i < p.size(); ++i)
      positions.push_back(static_cast<std::int32_t>(i));
  }
  const attention::BlockPlan plan = causal_plan(lengths);
  PrefillResult r = prefill_for_decode(ids, positions, plan);

  // Each prompt's slice of the packed keys and values becomes its own sequence's cache (each
  // packed layer freed once sliced: the batch's cache is not held twice).
  const std::int64_t kvd = config().kv_dim();
  std::vector<model::KvCache> caches(prompts.size());
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    caches[b].tokens = lengths[b];
    caches[b].keys.resize(r.keys.size());
    caches[b].values.resize(r.values.size());
  }
  for (std::size_t l = 0; l < r.keys.size(); ++l) {
    std::int64_t begin = 0;
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      const std::int64_t end = begin + lengths[b];
      caches[b].keys[l].assign(r.keys[l].begin() + begin * kvd, r.keys[l].begin() + end * kvd);
      caches[b].values[l].assign(r.values[l].begin() + begin * kvd,
                                 r.values[l].begin() + end * kvd);
      begin = end;
    }
    // (Move-assigning an empty vector frees; `= {}` would assign an empty list and keep the
    // capacity.)
    r.keys[l] = std::vector<float>();
    r.values[l] = std::vector<float>();
  }
  decoder_.adopt_caches(std::move(caches), max_new);
  std::vector<std::vector<std::int32_t>> answers = decode(r.last_logits, max_new, stop_ids);
  decoder_.reset();  // the batch's caches are not held through the next prefill
  return answers;
}

std::vector<std::int32_t> Engine::greedy_stepwise(std::span<const std::int32_t> prompt,
                                                  std::int64_t max_new,
                                                  std::span<const std::int32_t> stop_ids) {
  require(!prompt.empty(), "greedy: empty prompt");
  decoder_.reset();
  std::span<const float> logits;
  for (const std::int32_t t : prompt)
    logits = decoder_.step(t);
  return std::move(decode(logits, max_new, stop_ids)[0]);
}

}  // namespace anchorctx::eval
