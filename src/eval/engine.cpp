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

Engine::Engine(model::LlamaModel model, PrefillOptions options)
    : decoder_(std::move(model)), prefill_(decoder_.model(), options) {}

std::vector<std::int32_t> Engine::decode(std::span<const float> logits, std::int64_t max_new,
                                         std::span<const std::int32_t> stop_ids) {
  std::vector<std::int32_t> out;
  const core::Stopwatch watch;
  std::vector<float> current(logits.begin(), logits.end());
  while (static_cast<std::int64_t>(out.size()) < max_new) {
    const std::int32_t next = model::argmax(current);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    out.push_back(next);
    if (static_cast<std::int64_t>(out.size()) == max_new) break;
    const std::span<const float> l = decoder_.step(next);
    current.assign(l.begin(), l.end());
    ++stats_.decode_tokens;
  }
  stats_.decode_s += watch.elapsed_s();
  return out;
}

std::vector<std::int32_t> Engine::greedy(std::span<const std::int32_t> prompt, std::int64_t max_new,
                                         std::span<const std::int32_t> stop_ids) {
  require(!prompt.empty(), "greedy: empty prompt");
  const std::int64_t T = static_cast<std::int64_t>(prompt.size());
  const attention::BlockPlan plan = causal_plan(T);
  std::vector<std::int32_t> positions(prompt.size());
  std::iota(positions.begin(), positions.end(), 0);
  PrefillRequest request;
  request.input_ids = prompt;
  request.position_ids = positions;
  request.plan = &plan;
  request.keep_cache = true;
  request.last_logits = true;
  const core::Stopwatch watch;
  PrefillResult r = prefill_.run(request);
  stats_.prefill_s += watch.elapsed_s();
  stats_.prefill_tokens += T;
  decoder_.adopt_cache(std::move(r.keys), std::move(r.values), T);
  return decode(r.last_logits, max_new, stop_ids);
}

std::vector<std::int32_t> Engine::greedy_stepwise(std::span<const std::int32_t> prompt,
                                                  std::int64_t max_new,
                                                  std::span<const std::int32_t> stop_ids) {
  require(!prompt.empty(), "greedy: empty prompt");
  decoder_.reset();
  std::span<const float> logits;
  for (const std::int32_t t : prompt)
    logits = decoder_.step(t);
  return decode(logits, max_new, stop_ids);
}

}  // namespace anchorctx::eval
