// `anchorctx eval`: long-context evaluation of a model folder (include/anchorctx/eval/, docs/
// EVAL.md): perplexity by position and length, RULER-style needle tasks, a report folder.
// Every check of the request runs before the model's weights are read.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/attention/mask.h"
#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/dataset_tokenizer.h"
#include "anchorctx/data/document_reader.h"
#include "anchorctx/data/packer.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/eval/compare.h"
#include "anchorctx/eval/evaluation.h"
#include "anchorctx/eval/ruler.h"
#include "anchorctx/eval/synthetic_tasks.h"
#include "anchorctx/model/config.h"
#include "anchorctx/rope/positions.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/list_option.h"
#include "cli/model_tokenizer.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string model_dir, tasks = "ppl,niah_single_1,niah_single_2,niah_single_3",
                         lengths = "1024,2048", data, haystack, tokenizer, precision = "fp32",
                         templates, template_set = "ruler", mask = "causal", positions = "global",
                         out, bf16_compute;  // bf16_compute empty: model::default_bf16_compute()
  std::int64_t samples = 4, batch_tokens = 16384;
  int threads = 0;
  std::uint64_t seed = 0;
  bool allow_long = false, json = false, quiet = false, print_templates = false;
  std::vector<std::string> compare;
};

// `--compare RUN_A RUN_B ...`: the reports side by side, written to --out and printed.
void run_compare(const Args& a) {
  if (!a.model_dir.empty())
    throw CLI::ValidationError("--compare", "compares report folders; it takes no --model");
  std::vector<nlohmann::json> reports;
  for (const std::string& run : a.compare)
    reports.push_back(eval::load_report(run));
  const eval::Comparison c = eval::compare_reports(reports, a.compare);
  if (!a.out.empty()) eval::write_comparison(c, a.out);
  if (a.json) {
    std::printf("%s\n", eval::to_json(c).dump().c_str());
    return;
  }
  for (const eval::CompareRow& row : c.rows) {
    std::printf("%-16s %7lld", row.task.c_str(), static_cast<long long>(row.length));
    for (std::size_t r = 0; r < row.runs.size(); ++r) {
      const eval::RunScore& s = row.runs[r];
      if (!s.present) {
        std::printf("  %8s", "-");
        continue;
      }
      const int digits = row.task == "ppl" ? 4 : 1;
      std::printf("  %8.*f", digits, s.mean);
      // As compare.md: no difference where the first run lacks the cell, no standard error
      // from one sample (both NaN, not numbers to print).
      if (r == 0) continue;
      if (!std::isfinite(s.diff))
        std::printf(" (-)");
      else if (!std::isfinite(s.se))
        std::printf(" (%+.*f, 1 sample)", digits, s.diff);
      else
        std::printf(" (%+.*f +- %.*f %s)", digits, s.diff, digits, s.se,
                    s.paired ? "paired" : "welch");
    }
    std::printf("\n");
  }
  for (const std::string& n : c.notes)
    std::fprintf(stderr, "compare: %s\n", n.c_str());
}

// The windows for ppl: a packed dataset's first windows (the ones training reads first: held out
// only when the dataset was not trained on), a text/JSONL file or folder, or the built-in corpus
// under another seed than the demo trains on (held out).
std::vector<eval::PplSample> ppl_windows(const Args& a, const data::Tokenizer& tok,
                                         std::int64_t length, eval::EvalOptions& options) {
  if (!a.data.empty() && fs::exists(fs::path(a.data) / "meta.json")) {
    const data::Dataset ds = data::Dataset::open(a.data);
    data::require_dataset_tokenizer(ds, tok, "eval",
                                    a.tokenizer.empty() ? a.model_dir : a.tokenizer);
    options.ppl.anchor_mode = ds.anchor_mode();
    options.ppl_source = "dataset " + a.data;
    return eval::samples_from_dataset(ds, length, a.samples);
  }
  std::vector<std::vector<std::int32_t>> docs;
  const auto add = [&](const std::vector<std::int32_t>& ids) {
    docs.push_back(eval::ppl_document(tok, ids));
  };
  if (!a.data.empty()) {
    data::DocumentReader reader({a.data}, data::ReaderOptions{});
    data::Document doc;
    while (reader.next(doc))
      add(doc.pretokenized ? doc.ids : tok.encode(doc.text));
    options.ppl_source = a.data;
  } else {
    data::BuiltinCorpusOptions corpus;
    corpus.seed = 987654321;  // not the demo's 1234: held out
    corpus.documents = std::max<std::int64_t>(40, a.samples * (length + 64) * 4 / 1500 + 20);
    for (const std::string& text : data::builtin_corpus(corpus))
      add(tok.encode(text));
    options.ppl_source = "built-in corpus, seed 987654321";
  }
  return eval::samples_from_documents(docs, length, a.samples);
}

// ppl_windows, refused when the data holds no window, and said when it holds fewer than
// --samples: the report then gives the count scored (a run must not claim windows it lacks).
std::vector<eval::PplSample> ppl_samples(const Args& a, const data::Tokenizer& tok,
                                         std::int64_t length, eval::EvalOptions& options) {
  std::vector<eval::PplSample> s = ppl_windows(a, tok, length, options);
  require(!s.empty(), "eval: ppl: the data ({}) holds fewer than {} tokens", options.ppl_source,
          length + 1);
  if (static_cast<std::int64_t>(s.size()) < a.samples)
    std::fprintf(stderr,
                 "eval: warning: ppl: the data (%s) holds %zu windows of %zu tokens, fewer than "
                 "--samples %lld: scoring %zu (report.json's ppl 'windows')\n",
                 options.ppl_source.c_str(), s.size(), s.front().tokens.size(),
                 static_cast<long long>(a.samples), s.size());
  return s;
}

void run(const Args& a) {
  if (a.print_templates) {
    std::printf("%s", eval::default_templates_json().c_str());
    return;
  }
  if (!a.compare.empty()) {
    run_compare(a);
    return;
  }
  if (a.model_dir.empty()) throw CLI::ValidationError("--model", "required");
  // ---- every check before any work ----
  eval::EvalOptions options;
  options.tasks = split_list("--tasks", a.tasks);
  if (options.tasks.empty()) throw CLI::ValidationError("--tasks", "empty list");
  const std::vector<std::string> known = eval::task_names();
  for (const std::string& t : options.tasks)
    if (std::find(known.begin(), known.end(), t) == known.end()) {
      std::string list;
      for (const std::string& k : known)
        list += (list.empty() ? "" : ", ") + k;
      fail("eval: unknown task '{}' (known: {})", t, list);
    }
  options.lengths = parse_int_list("--lengths", a.lengths,
                                   "not a length of 16 to 2147483647 tokens (positions are int32)",
                                   16, std::numeric_limits<std::int32_t>::max());
  options.samples = a.samples;
  options.seed = a.seed;
  options.batch_tokens = a.batch_tokens;
  const model::LlamaConfig config = model::load_config(a.model_dir);
  for (const std::int64_t l : options.lengths)
    if (l > config.max_position_embeddings && !a.allow_long)
      fail(
          "eval: length {} is beyond the model's max_position_embeddings {} (--allow-long "
          "evaluates it anyway)",
          l, config.max_position_embeddings);
  const auto precision = parse_enum_option<model::Precision>("--precision", a.precision);
  options.ppl.mask = parse_enum_option<attention::MaskKind>("--mask", a.mask);
  options.ppl.positions = parse_enum_option<rope::PositionPolicy>("--positions", a.positions);
  const eval::Templates templates =
      a.templates.empty() ? eval::default_templates() : eval::load_templates(a.templates);
  options.templates = templates.at(a.template_set);
  options.template_set_name = a.template_set;
  const std::unique_ptr<data::Tokenizer> tok =
      data::load_tokenizer(model_tokenizer_spec("eval", a.model_dir, a.tokenizer, config));
  if (tok->vocab_size() > config.vocab_size)
    fail(
        "eval: the tokenizer has {} tokens, more than the model's vocab_size {} (is it this "
        "model's tokenizer?)",
        tok->vocab_size(), config.vocab_size);
  const bool has_ppl =
      std::find(options.tasks.begin(), options.tasks.end(), "ppl") != options.tasks.end();
  const bool has_niah = options.tasks.size() > (has_ppl ? 1u : 0u);
  const std::int64_t max_len = *std::max_element(options.lengths.begin(), options.lengths.end());
  if (has_ppl) options.ppl_samples = ppl_samples(a, *tok, max_len, options);
  if (has_niah) {
    if (a.haystack.empty()) {
      options.haystack_text = eval::builtin_prose();
    } else {
      std::ifstream in(a.haystack, std::ios::binary);
      if (!in) fail("eval: cannot read the haystack file {}", a.haystack);
      std::ostringstream text;
      text << in.rdbuf();
      options.haystack_text = text.str();
    }
    // Build one prompt per task at the shortest and longest length: a template, haystack or
    // length that cannot work fails here, before the weights are read.
    const eval::NiahGenerator probe(*tok, options.haystack_text, options.templates);
    const eval::SyntheticGenerator synthetic(*tok, options.haystack_text, options.templates);
    const std::int64_t min_len = *std::min_element(options.lengths.begin(), options.lengths.end());
    for (const std::string& t : options.tasks)
      for (const std::int64_t l : {min_len, max_len}) {
        if (const eval::NiahTask* task = eval::find_niah_task(t)) probe.make(*task, l, 0.5, a.seed);
        if (eval::is_synthetic_task(t))
          synthetic.make(t, l, eval::synthetic_sample_seed(a.seed, 0));
      }
  }

  // ---- the run ----
  const core::Stopwatch load;
  const model::Bf16Compute compute = resolve_bf16_compute(a.bf16_compute, precision, a.quiet);
  eval::Engine engine(model::load_llama_model(a.model_dir), {precision, 1024, 0, 4096, compute});
  const bool redraw = !a.quiet && isatty(STDERR_FILENO) != 0;
  if (!a.quiet)
    std::fprintf(stderr, "eval: loaded %s in %.1f s\n", a.model_dir.c_str(), load.elapsed_s());
  const core::Stopwatch watch;
  eval::EvalProgress progress;
  if (!a.quiet)
    progress = [&](std::int64_t done, std::int64_t total, const std::string& next) {
      const double s = watch.elapsed_s();
      const std::string eta =
          done > 0 ? fmt::format(", ETA {:.0f} s",
                                 s / static_cast<double>(done) * static_cast<double>(total - done))
                   : std::string();
      const int width = 24;
      const int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
      std::fprintf(stderr, "%s[%s%s] %lld/%lld%s %s%s", redraw ? "\r" : "",
                   std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(width - filled), '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), eta.c_str(),
                   next.c_str(), redraw ? "\x1b[K" : "\n");
      std::fflush(stderr);
    };
  eval::EvalReport report = eval::run_evaluation(engine, *tok, options, progress);
  if (redraw) std::fprintf(stderr, "\r\x1b[K");
  report.model = a.model_dir;
  report.precision = a.precision;
  if (precision == model::Precision::bf16) report.bf16_compute = model::to_string(compute);
  if (!a.out.empty()) eval::write_report(report, a.out);
  if (a.json) {
    std::printf("%s\n", eval::to_json(report).dump().c_str());
    return;
  }
  for (const eval::NiahCell& c : report.niah)
    std::printf("%-16s %7lld  %6.1f\n", c.task.c_str(), static_cast<long long>(c.length), c.mean());
  for (const eval::PplResult& p : report.ppl)
    std::printf("%-16s %7lld  loss %.4f  ppl %.3f\n", "ppl", static_cast<long long>(p.length),
                p.total.mean(), p.total.ppl());
  if (!a.quiet)
    std::fprintf(
        stderr, "eval: %.1f s (prefill %.0f tokens/s, decode %.1f tokens/s)\n", report.seconds,
        report.stats.prefill_s > 0 ? report.stats.prefill_tokens / report.stats.prefill_s : 0.0,
        report.stats.decode_s > 0 ? report.stats.decode_tokens / report.stats.decode_s : 0.0);
}

}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Evaluate a model folder on long-context tasks: `ppl` (loss and perplexity by token "
      "position bucket 0-128, 128-256, 256-512, ... and by context length, the same text cut at "
      "every length) and RULER's synthetic tasks: needles (niah_single_1/2/3, niah_multikey_1/2/3, "
      "niah_multivalue, niah_multiquery; the needle at evenly spaced depths), variable tracking "
      "(vt), common- and frequent-words extraction (cwe, fwe), generated from --seed at each "
      "length in the model's tokens, scored as RULER does (fraction of expected strings in the "
      "greedy answer). Prompts are prefilled at once through the attention "
      "kernels, answers decoded with a KV cache. See docs/EVAL.md.");
  cmd->add_option("--model", a->model_dir, "The model folder (config.json, weights)");
  cmd->add_option("--tasks", a->tasks, "Comma-separated tasks")->capture_default_str();
  cmd->add_option("--lengths", a->lengths, "Comma-separated context lengths in tokens")
      ->capture_default_str();
  cmd->add_option("--samples", a->samples,
                  "Prompts per (task, length), needles at depths i/(n-1); windows for ppl (fewer "
                  "when the ppl data runs out: a warning, and the report gives the count)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000}));
  cmd->add_option("--batch-tokens", a->batch_tokens,
                  "Run the prompts of a (task, length) together in batches of at most this many "
                  "prompt tokens: one varlen prefill, then their answers decoded together (a "
                  "longer prompt alone; 0: one at a time); the answers are the same either way")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 30));
  cmd->add_option("--seed", a->seed, "Seed of the task prompts (sample i uses seed + i)")
      ->capture_default_str();
  cmd->add_option("--data", a->data,
                  "ppl text: a packed dataset folder (its first windows, the ones training "
                  "reads first: pass a dataset not used for training for held-out loss; scored "
                  "with its anchor mode), or a text/JSONL file or folder (default: the built-in "
                  "corpus, seed 987654321, held out from the demo's)");
  cmd->add_option("--haystack", a->haystack,
                  "A text file the prose haystacks are cut from, and cwe's words (default: the "
                  "built-in corpus's prose)");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "'byte' or a tokenizer file (default: the model folder's, else byte)");
  cmd->add_option("--precision", a->precision,
                  "fp32, or bf16 (prefill and ppl as the bf16 training forward; decode steps in "
                  "float32 on the bf16-rounded weights)")
      ->capture_default_str();
  cmd->add_option("--bf16-compute", a->bf16_compute,
                  kBf16ComputeHelpWithPrecision + ". Decode steps stay float32");
  cmd->add_option("--templates", a->templates,
                  "A JSON file of prompt templates (see --print-templates for the format)");
  cmd->add_option("--template-set", a->template_set,
                  "The template set: ruler (RULER's wording, every task) or kv (the built-in "
                  "corpus's `key 4821 is apple.` lines, for demo-trained models; niah tasks only)")
      ->capture_default_str();
  cmd->add_option("--mask", a->mask, "ppl attention mask")
      ->type_name(enum_placeholder<attention::MaskKind>())
      ->capture_default_str();
  cmd->add_option("--positions", a->positions, "ppl position ids")
      ->type_name(enum_placeholder<rope::PositionPolicy>())
      ->capture_default_str();
  cmd->add_flag("--allow-long", a->allow_long,
                "Allow lengths beyond the model's max_position_embeddings");
  cmd->add_option("--out", a->out,
                  "Report folder (created if missing; the files replaced as a set, each whole): "
                  "report.json, report.md, accuracy_vs_length, ppl_by_position, niah_heatmap "
                  "(.svg, .png)");
  cmd->add_flag("--json", a->json,
                "Print report.json's object (with --compare: compare.json's) on stdout");
  cmd->add_flag("--quiet", a->quiet,
                "Nothing on stderr but warnings and errors (no progress, no timing line)");
  cmd->add_option("--compare", a->compare,
                  "Instead of evaluating: put two or more report folders (or report.json files) "
                  "side by side: each (task, length) score, the difference to the first run and "
                  "its standard error across samples (paired when the runs share seed, templates "
                  "and depths, for ppl the same windows: source, window length and count; else "
                  "Welch); with --out, writes compare.json, compare.md and "
                  "compare_accuracy_vs_length (.svg, .png)")
      ->type_name("RUN")
      ->expected(2, CLI::detail::expected_max_vector_size);
  cmd->add_flag("--print-templates", a->print_templates,
                "Print the built-in prompt templates (JSON) and exit");
  add_threads_option(*cmd, a->threads, kRunThreadsHelp);
  cmd->callback([a] {
    core::set_default_threads(a->threads);
    run(*a);
  });
}

}  // namespace anchorctx::cli
