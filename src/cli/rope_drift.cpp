// `anchorctx rope-drift`: how far bf16 RoPE moves a model's attention when all positions are
// shifted (include/anchorctx/analysis/rope_drift.h, docs/rope-drift.md). stdout carries the
// JSON object with --json, else a short table; progress goes to stderr.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/analysis/rope_drift.h"
#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/dataset_tokenizer.h"
#include "anchorctx/data/document_reader.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/parameters.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/list_option.h"
#include "cli/model_tokenizer.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string model_dir, tokenizer, input, dataset, out, deltas;
  std::string modes = "fp32,hf_bf16,exact", policies = "global,anchor";
  std::int64_t sequences = 1, seq_len = 4096, delta2 = 16;
  std::optional<std::int64_t> logit_delta1;  // unset: 0 where --deltas has it, else its first
  int threads = 0;
  std::optional<std::uint64_t> random_init;
  bool allow_long = false, quick = false, json = false, progress = false, quiet = false;
  bool verify_data = false;
  bool sequences_given = false, seq_len_given = false;  // on the command line: --quick keeps them
};

std::vector<std::vector<std::int32_t>> load_sequences(const Args& args,
                                                      const model::LlamaConfig& config) {
  if (!args.dataset.empty()) {
    const data::Dataset ds = data::Dataset::open(args.dataset);
    if (args.verify_data) ds.verify();
    // The model's own tokenizer, where it has one, must be the dataset's.
    if (!args.tokenizer.empty() ||
        (!args.model_dir.empty() && data::folder_tokenizer_file(args.model_dir)))
      data::require_dataset_tokenizer(
          ds, *data::load_tokenizer(args.tokenizer.empty() ? args.model_dir : args.tokenizer),
          "rope-drift", args.tokenizer.empty() ? args.model_dir : args.tokenizer);
    require(ds.window_len() >= args.seq_len,
            "rope-drift: dataset '{}' has windows of {} tokens, shorter than --seq-len {}",
            args.dataset, ds.window_len(), args.seq_len);
    require(ds.num_windows() >= static_cast<std::uint64_t>(args.sequences),
            "rope-drift: dataset '{}' has {} windows, {} sequences were asked for", args.dataset,
            ds.num_windows(), args.sequences);
    std::vector<std::vector<std::int32_t>> out;
    for (std::int64_t i = 0; i < args.sequences; ++i) {
      std::vector<std::int32_t> t = ds.tokens(static_cast<std::uint64_t>(i));
      t.resize(static_cast<std::size_t>(args.seq_len));
      out.push_back(std::move(t));
    }
    return out;
  }
  const std::unique_ptr<data::Tokenizer> tok = data::load_tokenizer(
      model_tokenizer_spec("rope-drift", args.model_dir, args.tokenizer, config));
  require(tok->vocab_size() <= config.vocab_size,
          "rope-drift: the tokenizer has {} tokens, more than the model's vocab_size {}",
          tok->vocab_size(), config.vocab_size);
  std::vector<std::vector<std::int32_t>> docs;
  if (!args.input.empty()) {
    data::DocumentReader reader({args.input}, data::ReaderOptions{});
    data::Document doc;
    while (reader.next(doc))
      docs.push_back(doc.pretokenized ? doc.ids : tok->encode(doc.text));
  } else {
    // The built-in corpus: enough documents for the request (about 4 characters a token).
    data::BuiltinCorpusOptions corpus;
    corpus.documents =
        std::max<std::int64_t>(50, args.sequences * (args.seq_len + 64) * 4 / 1500 + 20);
    for (const std::string& text : data::builtin_corpus(corpus))
      docs.push_back(tok->encode(text));
  }
  // The sequence opens with pack's anchor token (bos, else eos: GPT-2 and Qwen2 have no bos),
  // the token the anchor policy keeps at position 0; without one the first text token was.
  return analysis::make_sequences(docs, args.sequences, args.seq_len,
                                  data::default_anchor_id(*tok).value_or(-1),
                                  tok->eos_id().value_or(-1));
}

void run(Args args) {
  if (args.quick) {
    if (!args.seq_len_given) args.seq_len = 256;
    if (!args.sequences_given) args.sequences = 1;
    if (args.deltas.empty()) args.deltas = "0,8,15,17,100";
  }
  analysis::RopeDriftOptions options;
  options.seq_len = args.seq_len;
  options.delta2 = args.delta2;
  if (!args.deltas.empty())
    options.deltas = parse_int_list("--deltas", args.deltas, "not an integer");
  // A list without 0 (--deltas 50,100) needs no --logit-delta1: its first value is taken.
  options.logit_delta1 = args.logit_delta1.value_or(
      options.deltas.empty() ||
              std::find(options.deltas.begin(), options.deltas.end(), 0) != options.deltas.end()
          ? 0
          : options.deltas.front());
  options.modes = split_list("--modes", args.modes);
  for (const auto& m : options.modes)
    analysis::check_mode_name(m);
  options.policies.clear();
  for (const auto& p : split_list("--policies", args.policies)) {
    const rope::PositionPolicy policy = parse_enum_option<rope::PositionPolicy>("--policies", p);
    analysis::check_policy(policy);
    options.policies.push_back(policy);
  }
  options.allow_long = args.allow_long;
  // Progress: a line per comparison with --progress (for logs), else one redrawn line on a
  // terminal (none with --quiet or when stderr is a pipe).
  const bool redraw = !args.progress && !args.quiet && isatty(STDERR_FILENO) != 0;
  const auto started = std::chrono::steady_clock::now();
  if (args.progress || redraw)
    options.progress = [=](std::int64_t done, std::int64_t total, const std::string& next) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      const std::string eta =
          done > 0 ? fmt::format(", ETA {:.0f} s", elapsed / static_cast<double>(done) *
                                                       static_cast<double>(total - done))
                   : std::string();
      std::fprintf(stderr, "%srope-drift: %lld/%lld comparisons%s: %s%s", redraw ? "\r" : "",
                   static_cast<long long>(done), static_cast<long long>(total), eta.c_str(),
                   next.c_str(), redraw ? "\x1b[K" : "\n");
      std::fflush(stderr);
    };

  const model::LlamaConfig config = model::load_model_config(args.model_dir);
  const model::ParameterLayout layout = model::ParameterLayout::for_config(config);
  std::vector<float> params(layout.total());
  if (args.random_init) {
    model::init_parameters(layout, config, *args.random_init, params);
  } else {
    params = model::load_parameters(args.model_dir, layout);
  }
  const auto sequences = load_sequences(args, config);
  const analysis::RopeDriftReport report =
      analysis::measure_rope_drift(config, params, sequences, options);
  if (redraw) std::fprintf(stderr, "\r\x1b[K");

  const std::string title =
      args.random_init ? fmt::format("{} (random init, seed {})", args.model_dir, *args.random_init)
                       : args.model_dir;
  if (!args.out.empty()) analysis::write_report(report, title, args.out);
  if (args.json) {
    std::printf("%s\n", analysis::to_json(report).dump().c_str());
    return;
  }
  std::printf("%-8s %-7s %7s %7s %12s %12s\n", "mode", "policy", "delta1", "delta2", "D",
              "D_excl_first");
  for (const auto& r : report.results)
    std::printf("%-8s %-7s %7lld %7lld %12.4g %12.4g\n", r.mode.c_str(),
                std::string(rope::to_string(r.policy)).c_str(), static_cast<long long>(r.delta1),
                static_cast<long long>(r.delta2), r.D, r.D_excl_first);
  for (const auto& s : report.first_token_share)
    std::printf("first-token share %s/%s: %.3f (rank %lld)\n", s.mode.c_str(),
                std::string(rope::to_string(s.policy)).c_str(), s.share,
                static_cast<long long>(s.rank));
  if (!args.quiet) std::fprintf(stderr, "rope-drift: %.1f s\n", report.seconds);
}

}  // namespace

void register_rope_drift(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "rope-drift",
      "Measure how much a model's attention moves when every position id is shifted "
      "(paper §1): D(delta1, delta2) over layers, heads and causal rows weighted 1/(row "
      "length), per precision mode and position policy; the per-token contribution, D without "
      "the first token and D_logit on the first key against length. Default: 1 sequence of "
      "4096 tokens from the built-in corpus, the paper's 19 delta1 values, 3 modes, 2 "
      "policies, 114 compared shifts (stories260K with --allow-long: about 30 s and 330 MB on "
      "a quiet 2-core machine; --policies global or fewer --deltas cut it; time grows with "
      "--sequences and with T squared). Progress on stderr when it is a terminal. "
      "See docs/rope-drift.md.");
  cmd->add_option("--model", args->model_dir, "The model folder (config.json, weights)")
      ->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "'byte' or a tokenizer file (default: the model folder's tokenizer, else byte)");
  auto* input = cmd->add_option("--input", args->input,
                                "A text or JSONL file (or folder) of documents, concatenated "
                                "into sequences (default: the built-in corpus)");
  cmd->add_option("--dataset", args->dataset,
                  "A packed dataset folder: its first windows, clipped to --seq-len")
      ->excludes(input);
  cmd->add_flag("--verify-data", args->verify_data,
                "Hash the --dataset's files against its meta.json first (opening checks only "
                "its structure, and each window read its token ids)");
  auto* sequences =
      cmd->add_option("--sequences", args->sequences, "Number of sequences (D is their mean)")
          ->capture_default_str()
          ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000}));
  auto* seq_len = cmd->add_option("--seq-len", args->seq_len, "Tokens per sequence (T)")
                      ->capture_default_str()
                      ->check(CLI::Range(std::int64_t{2}, std::int64_t{1} << 20));
  cmd->add_option("--delta2", args->delta2, "The reference shift")->capture_default_str();
  cmd->add_option("--deltas", args->deltas,
                  "Comma-separated delta1 values (default: the paper's 0,2,...,14,15,17,18,20,"
                  "22,50,100,200,500,1000,2000)");
  cmd->add_option("--logit-delta1", args->logit_delta1,
                  "The delta1 (one of --deltas) whose D_logit is reported against length "
                  "(default: 0, or the first of --deltas when it has no 0)");
  cmd->add_option("--modes", args->modes, "Comma-separated: fp32, hf_bf16, exact")
      ->capture_default_str();
  cmd->add_option("--policies", args->policies,
                  "Comma-separated: global (all positions shifted), anchor (first token at 0)")
      ->capture_default_str();
  cmd->add_option("--random-init", args->random_init,
                  "Measure a random initialisation of the model's shape (this seed) instead of "
                  "its weights");
  cmd->add_flag("--allow-long", args->allow_long,
                "Allow --seq-len beyond the model's max_position_embeddings");
  cmd->add_option("--out", args->out,
                  "Report folder (created if missing; files of these names are replaced as a set, "
                  "each whole): report.json, report.md and the plots d_vs_delta, per_token and "
                  "d_logit, each as .svg and .png");
  cmd->add_flag("--quick", args->quick,
                "A small run for CI: 1 sequence of 256 tokens, delta1 in 0,8,15,17,100 (each "
                "unless --sequences, --seq-len or --deltas says otherwise)");
  auto* progress = cmd->add_flag("--progress", args->progress,
                                 "Print a line per comparison on stderr (default: one redrawn "
                                 "line when stderr is a terminal)");
  cmd->add_flag("--quiet", args->quiet,
                "Nothing on stderr but warnings and errors (no progress, no timing line)")
      ->excludes(progress);
  cmd->add_flag("--json", args->json,
                "Print one JSON object on stdout: results [{mode, policy, delta1, delta2, D, "
                "D_excl_first, first_token}], logit_growth [{mode, policy, delta1, delta2, T, "
                "D_logit}], first_token_share [{mode, policy, share, rank, ...}], seq_len, "
                "sequences, model, seconds");
  add_threads_option(*cmd, args->threads, kRunThreadsHelp);
  cmd->callback([args, sequences, seq_len] {
    core::set_default_threads(args->threads);
    args->sequences_given = sequences->count() > 0;
    args->seq_len_given = seq_len->count() > 0;
    run(*args);
  });
}

}  // namespace anchorctx::cli
