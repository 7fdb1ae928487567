// One evaluation run: the requested tasks at the requested lengths on one model, and the report
// folder it leaves (report.json, report.md, plots as SVG and PNG, each written atomically).
//
// Needle tasks: --samples prompts per (task, length), the asked needle at evenly spaced depths
// (sample i of n at depth i / (n - 1); one sample at 0.5), seed + i for the rest of the
// prompt; vt, cwe, fwe: synthetic_sample_seed(seed, i); greedy answers scored with
// string_match_all; a (task, length) cell is the mean score (0-100). `ppl`: see perplexity.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/eval/perplexity.h"
#include "anchorctx/eval/templates.h"

namespace anchorctx::eval {

// The task names `anchorctx eval --tasks` takes: ppl and the niah tasks.
std::vector<std::string> task_names();

struct EvalOptions {
  std::vector<std::string> tasks;
  std::vector<std::int64_t> lengths;
  std::int64_t samples = 4;
  std::uint64_t seed = 0;
  TemplateSet templates;               // the set the needle prompts use
  std::string template_set_name;       // for the report
  std::string haystack_text;           // prose for the needle haystacks
  std::vector<PplSample> ppl_samples;  // ppl windows of at least max(lengths) + 1 tokens
  PplOptions ppl;                      // lengths filled in by run_evaluation
  std::string ppl_source;              // for the report
  // The prompts of one (task, length) are prefilled together as varlen batches of at most this
  // many tokens (a prompt longer than that alone); 0: one prompt at a time. The answers are the
  // same either way (Engine::greedy_batch).
  std::int64_t batch_tokens = 16384;
};

struct NiahRecord {
  double depth = 0.0, score = 0.0;
  std::int64_t prompt_tokens = 0;
  std::vector<std::string> answers;
  std::string output;  // the decoded answer, valid UTF-8 (invalid bytes as U+FFFD)
};

struct NiahCell {
  std::string task;
  std::int64_t length = 0;
  std::vector<NiahRecord> samples;
  double mean() const;  // mean score, 0-100
};

struct EvalReport {
  std::string model, precision, template_set;
  std::string bf16_compute;  // bf16 precision: "native" or "emulated"; empty in fp32
  std::vector<std::string> tasks;
  std::vector<std::int64_t> lengths;
  std::int64_t samples = 0;
  std::uint64_t seed = 0;
  std::vector<NiahCell> niah;
  std::vector<PplResult> ppl;
  std::string ppl_source;
  // Tokens of each ppl window before it is cut at a length (max(lengths) + 1 for documents, a
  // packed dataset's window): with the source and the window count, what makes two runs' windows
  // the same text (compare.h pairs on it). 0 without ppl.
  std::int64_t ppl_window_tokens = 0;
  EngineStats stats;
  double seconds = 0.0;
};

// Progress: (done, total, what is next).
using EvalProgress = std::function<void(std::int64_t, std::int64_t, const std::string&)>;

// Runs everything; throws anchorctx::Error on a task name it does not know (callers check
// first with task_names()) or a prompt that cannot be built.
EvalReport run_evaluation(Engine& engine, const data::Tokenizer& tokenizer,
                          const EvalOptions& options, const EvalProgress& progress = {});

nlohmann::json to_json(const EvalReport& report);
// report.json, report.md, accuracy_vs_length, ppl_by_position and niah_heatmap (.svg, .png)
// into `dir` (created if missing), each file atomically.
void write_report(const EvalReport& report, const std::filesystem::path& dir);

}  // namespace anchorctx::eval
