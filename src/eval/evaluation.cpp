#include "anchorctx/eval/evaluation.h"

#include <algorithm>
#include <cmath>

#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/core/utf8.h"
#include "anchorctx/eval/ruler.h"
#include "anchorctx/eval/synthetic_tasks.h"

namespace anchorctx::eval {

std::vector<std::string> task_names() {
  std::vector<std::string> out = {"ppl"};
  for (const NiahTask& t : niah_tasks())
    out.push_back(t.name);
  for (const std::string& t : synthetic_task_names())
    out.push_back(t);
  return out;
}

double NiahCell::mean() const {
  if (samples.empty()) return std::nan("");
  double sum = 0.0;
  for (const NiahRecord& r : samples)
    sum += r.score;
  return 100.0 * sum / static_cast<double>(samples.size());
}

EvalReport run_evaluation(Engine& engine, const data::Tokenizer& tokenizer,
                          const EvalOptions& options, const EvalProgress& progress) {
  const core::Stopwatch watch;
  EvalReport report;
  report.tasks = options.tasks;
  report.lengths = options.lengths;
  report.samples = options.samples;
  report.seed = options.seed;
  report.template_set = options.template_set_name;
  report.ppl_source = options.ppl_source;
  if (!options.ppl_samples.empty())
    report.ppl_window_tokens = static_cast<std::int64_t>(options.ppl_samples.front().tokens.size());

  // Work units for the progress line: one per scored ppl cut or needle prompt.
  const bool has_ppl =
      std::find(options.tasks.begin(), options.tasks.end(), "ppl") != options.tasks.end();
  const std::int64_t niah_count =
      static_cast<std::int64_t>(options.tasks.size()) - (has_ppl ? 1 : 0);
  const std::int64_t total =
      static_cast<std::int64_t>(options.lengths.size()) *
      (niah_count * options.samples +
       (has_ppl ? static_cast<std::int64_t>(options.ppl_samples.size()) : 0));
  std::int64_t done = 0;
  // Each batch and each ppl sample starts here: a stop asked for (in a study) ends it there.
  const auto tick = [&](const std::string& what) {
    core::throw_if_interrupted("during the evaluation");
    if (progress) progress(done, total, what);
  };

  std::vector<std::int32_t> stop_ids;
  for (const auto id : engine.config().eos_token_ids)
    stop_ids.push_back(static_cast<std::int32_t>(id));
  if (const auto eos = tokenizer.eos_id()) stop_ids.push_back(*eos);

  std::optional<NiahGenerator> generator;
  std::optional<SyntheticGenerator> synthetic_generator;
  double ppl_s = 0.0;
  std::int64_t ppl_tokens = 0;
  for (const std::string& name : options.tasks) {
    if (name == "ppl") {
      PplOptions ppl = options.ppl;
      ppl.lengths = options.lengths;
      tick("ppl");
      const core::Stopwatch ppl_watch;
      report.ppl = evaluate_ppl(engine.prefill(), options.ppl_samples, ppl, [&] {
        ++done;
        tick("ppl");
      });
      ppl_s = ppl_watch.elapsed_s();
      for (const std::int64_t l : options.lengths)
        ppl_tokens += l * static_cast<std::int64_t>(options.ppl_samples.size());
      continue;
    }
    const NiahTask* task = find_niah_task(name);
    const bool synthetic = is_synthetic_task(name);
    if (!task && !synthetic) fail("eval: unknown task '{}'", name);
    if (task && !generator) generator.emplace(tokenizer, options.haystack_text, options.templates);
    if (synthetic && !synthetic_generator)
      synthetic_generator.emplace(tokenizer, options.haystack_text, options.templates);
    for (const std::int64_t length : options.lengths) {
      NiahCell cell;
      cell.task = name;
      cell.length = length;
      // The cell's prompts, then prefilled in varlen batches of at most batch_tokens tokens.
      std::vector<TaskSample> samples;
      for (std::int64_t i = 0; i < options.samples; ++i) {
        const double depth = options.samples == 1 ? 0.5
                                                  : static_cast<double>(i) /
                                                        static_cast<double>(options.samples - 1);
        // niah: --seed + i (its depth, mixed into the prompt's stream, differs from sample to
        // sample); vt, cwe, fwe: a stream of their own per (seed, i), synthetic_tasks.h.
        samples.push_back(
            task ? generator->make(*task, length, depth,
                                   options.seed + static_cast<std::uint64_t>(i))
                 : synthetic_generator->make(name, length, synthetic_sample_seed(options.seed, i)));
      }
      for (std::size_t first = 0; first < samples.size();) {
        tick(name + " @ " + std::to_string(length));
        std::size_t end = first + 1;
        std::int64_t tokens = static_cast<std::int64_t>(samples[first].prompt_ids.size());
        while (end < samples.size() && options.batch_tokens > 0 &&
               tokens + static_cast<std::int64_t>(samples[end].prompt_ids.size()) <=
                   options.batch_tokens) {
          tokens += static_cast<std::int64_t>(samples[end].prompt_ids.size());
          ++end;
        }
        std::vector<std::span<const std::int32_t>> prompts;
        for (std::size_t i = first; i < end; ++i)
          prompts.emplace_back(samples[i].prompt_ids);
        // Every sample of a cell has the same tokens to generate.
        const std::vector<std::vector<std::int32_t>> answers =
            engine.greedy_batch(prompts, samples[first].tokens_to_generate, stop_ids);
        for (std::size_t i = first; i < end; ++i) {
          const TaskSample& s = samples[i];
          NiahRecord r;
          r.depth = s.depth;  // NaN for vt, cwe, fwe
          r.prompt_tokens = static_cast<std::int64_t>(s.prompt_ids.size());
          r.answers = s.answers;
          // Valid text (invalid bytes as U+FFFD, as a tokenizer.json decoder gives them): an
          // early model's answer may cut a character, and the report is JSON.
          r.output = core::utf8_lossy(tokenizer.decode(answers[i - first]));
          r.score = string_match_all(r.output, r.answers);
          cell.samples.push_back(std::move(r));
          ++done;
        }
        first = end;
      }
      report.niah.push_back(std::move(cell));
    }
  }
  tick("");
  report.stats = engine.stats();
  // The ppl cuts are prefills too (with the LM head over every token).
  report.stats.prefill_tokens += ppl_tokens;
  report.stats.prefill_s += ppl_s;
  report.seconds = watch.elapsed_s();
  return report;
}

namespace {

nlohmann::json finite(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json to_json(const EvalReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["precision"] = r.precision;
  j["bf16_compute"] =
      r.bf16_compute.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.bf16_compute);
  j["template_set"] = r.template_set;
  j["tasks"] = r.tasks;
  j["lengths"] = r.lengths;
  j["samples"] = r.samples;
  j["seed"] = r.seed;
  j["seconds"] = r.seconds;
  j["throughput"] = {{"prefill_tokens", r.stats.prefill_tokens},
                     {"prefill_tokens_per_s", finite(r.stats.prefill_tokens / r.stats.prefill_s)},
                     {"decode_tokens", r.stats.decode_tokens},
                     {"decode_tokens_per_s", finite(r.stats.decode_tokens / r.stats.decode_s)}};
  nlohmann::json niah = nlohmann::json::array();
  for (const NiahCell& c : r.niah) {
    nlohmann::json cell = {{"task", c.task}, {"length", c.length}, {"score", finite(c.mean())}};
    nlohmann::json samples = nlohmann::json::array();
    for (const NiahRecord& s : c.samples)
      samples.push_back({{"depth", finite(s.depth)},
                         {"score", s.score},
                         {"prompt_tokens", s.prompt_tokens},
                         {"answers", s.answers},
                         {"output", s.output}});
    cell["samples"] = std::move(samples);
    niah.push_back(std::move(cell));
  }
  j["niah"] = std::move(niah);
  nlohmann::json ppl = nlohmann::json::array();
  for (const PplResult& p : r.ppl) {
    nlohmann::json buckets = nlohmann::json::array();
    for (const PplBucket& b : p.buckets)
      buckets.push_back({{"begin", b.begin},
                         {"end", b.end},
                         {"tokens", b.tally.tokens},
                         {"loss", finite(b.tally.mean())},
                         {"ppl", finite(b.tally.ppl())}});
    nlohmann::json per_sample = nlohmann::json::array();
    for (const double m : p.sample_mean)
      per_sample.push_back(finite(m));
    ppl.push_back({{"length", p.length},
                   {"windows", p.sample_mean.size()},
                   {"tokens", p.total.tokens},
                   {"loss", finite(p.total.mean())},
                   {"ppl", finite(p.total.ppl())},
                   {"sample_loss", per_sample},
                   {"buckets", buckets}});
  }
  j["ppl"] = std::move(ppl);
  j["ppl_source"] = r.ppl_source;
  j["ppl_window_tokens"] =
      r.ppl_window_tokens > 0 ? nlohmann::json(r.ppl_window_tokens) : nlohmann::json(nullptr);
  return j;
}

}  // namespace anchorctx::eval
