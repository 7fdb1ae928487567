// `anchorctx study`: the paper's context-extension experiment at small scale as one resumable
// command (include/anchorctx/study/, docs/STUDY.md). Settings: a profile (the default, or
// --quick), then the --config TOML file and the command line (the command line wins), then
// --scale.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/study/config.h"
#include "anchorctx/study/study.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/list_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

struct Args {
  std::string config_file, out;
  bool quick = false, quiet = false, report_only = false;
  double scale = 1.0;
  int threads = 0;           // of this process, not a setting of the study
  study::StudyConfig given;  // values of the settings options (used where given)
  std::string variants, seeds, eval_tasks, eval_lengths, eval_precision, bf16_compute;
  // Copies each given setting into a config.
  std::vector<std::function<void(study::StudyConfig&)>> apply;
  std::vector<const CLI::Option*> setting_options;  // for the command line the report prints
  std::string command_line;
};

template <typename T>
void setting(CLI::App& cmd, Args& a, const std::string& name, T study::StudyConfig::*field,
             const std::string& help) {
  const study::StudyConfig defaults = study::default_config();
  CLI::Option* opt = cmd.add_option("--" + name, a.given.*field,
                                    help + fmt::format(" (default {})", defaults.*field));
  a.apply.push_back([opt, field, &a](study::StudyConfig& c) {
    if (opt->count() > 0) c.*field = a.given.*field;
  });
  a.setting_options.push_back(opt);
}

void list_setting(CLI::App& cmd, Args& a, const std::string& name, std::string Args::*text,
                  const std::string& help,
                  std::function<void(study::StudyConfig&, const std::string&)> set) {
  CLI::Option* opt = cmd.add_option("--" + name, a.*text, help);
  a.apply.push_back([opt, text, set, &a](study::StudyConfig& c) {
    if (opt->count() > 0) set(c, a.*text);
  });
  a.setting_options.push_back(opt);
}

// A value as one shell word: as it is when it has no character a shell treats specially, else
// in single quotes.
std::string shell_word(const std::string& value) {
  const bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) != 0 ||
           std::string_view("_.,:/=+-").find(ch) != std::string_view::npos;
  });
  if (plain) return value;
  std::string quoted = "'";
  for (const char ch : value)
    quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return quoted + "'";
}

void run(Args& a) {
  core::install_interrupt_handlers();  // Ctrl-C stops at a step or evaluation batch
  if (a.out.empty()) throw CLI::ValidationError("--out", "required (the study folder)");
  // The folder and its missing parents are created later: a file on that path would surface
  // as std::filesystem's raw "cannot create directories" text.
  std::error_code ec;
  for (std::filesystem::path p = a.out; !p.empty(); p = p.parent_path()) {
    if (!std::filesystem::exists(p, ec)) {
      if (p == p.parent_path()) break;
      continue;
    }
    if (!std::filesystem::is_directory(p, ec))
      fail("--out '{}': '{}' is not a folder (the study folder is created there)", a.out,
           p.string());
    break;
  }
  study::StudyConfig c = a.quick ? study::quick_config() : study::default_config();
  for (const auto& apply : a.apply)
    apply(c);
  if (a.scale != 1.0) c = study::scaled(c, a.scale);
  study::validate(c);
  study::StudyOptions options;
  options.quiet = a.quiet;
  options.command_line = a.command_line;
  if (a.report_only)
    study::write_study_report(c, a.out, options);
  else
    study::run_study(c, a.out, options);
}

}  // namespace

void register_study(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "study",
      "The paper's experiment at small scale, resumable: stage 0 pretrains a small Llama at a "
      "short window (causal, bf16) on the built-in corpus; stage 1 continues it at an 8x longer "
      "window with the RoPE base raised, once per variant (full, intra_cont, intra_reset, anchor "
      "in bf16 over --seeds; full_fp32, anchor_fp32, anchor_exact as precision controls with the "
      "first seed); every final model is evaluated (retrieval tasks at each length, held-out loss "
      "by position); --out gets report.md (the paper's table layout, mean and spread across "
      "seeds, step times, a verdict per claim by the rule of docs/STUDY.md) and plots. Rerun the "
      "same command to continue an interrupted study. See docs/STUDY.md.");
  cmd->add_option("--out", a->out, "The study folder (created; a rerun continues it)");
  cmd->add_option("--config", a->config_file,
                  "A TOML file of settings (keys: the long option names without dashes; lists "
                  "as \"a,b,c\" strings), e.g. configs/study.toml");
  cmd->add_flag("--quick", a->quick,
                "The pipeline check for CI (tiny model, windows 32 -> 256, a few steps, one "
                "seed): checks the plumbing, not the science");
  cmd->add_option("--scale", a->scale,
                  "Multiply steps, corpus documents, checkpoint interval and eval samples by this "
                  "(after the profile and the settings)")
      ->capture_default_str();
  cmd->add_flag("--report-only", a->report_only,
                "Rewrite report.md, report.json and plots/ from the finished sub-runs; train "
                "nothing (give the study's own settings: others are refused)");
  cmd->add_flag("--quiet", a->quiet, "No progress on stderr");
  using C = study::StudyConfig;
  Args& r = *a;
  setting(*cmd, r, "preset", &C::preset, "Model preset of stage 0");
  setting(*cmd, r, "corpus-seed", &C::corpus_seed, "Seed of the built-in corpus");
  setting(*cmd, r, "retrieval-fraction", &C::retrieval_fraction, "Share of key-value documents");
  setting(*cmd, r, "stage0-documents", &C::stage0_documents, "Stage 0 corpus documents");
  setting(*cmd, r, "stage0-median-chars", &C::stage0_median_chars,
          "Stage 0 median document length in characters");
  setting(*cmd, r, "stage1-documents", &C::stage1_documents, "Stage 1 corpus documents");
  setting(*cmd, r, "stage1-median-chars", &C::stage1_median_chars,
          "Stage 1 median document length (long documents upsampled)");
  setting(*cmd, r, "stage1-max-chars", &C::stage1_max_chars, "Stage 1 longest document");
  setting(*cmd, r, "stage0-seq-len", &C::stage0_seq_len, "Stage 0 window");
  setting(*cmd, r, "stage0-steps", &C::stage0_steps, "Stage 0 steps");
  setting(*cmd, r, "stage0-batch-windows", &C::stage0_batch_windows, "Stage 0 windows per step");
  setting(*cmd, r, "stage0-lr", &C::stage0_lr, "Stage 0 peak learning rate (cosine to 10%)");
  setting(*cmd, r, "stage0-rope-theta", &C::stage0_rope_theta, "Stage 0 RoPE base");
  setting(*cmd, r, "stage1-seq-len", &C::stage1_seq_len, "Stage 1 window");
  setting(*cmd, r, "stage1-steps", &C::stage1_steps, "Stage 1 steps of every run");
  setting(*cmd, r, "stage1-batch-windows", &C::stage1_batch_windows, "Stage 1 windows per step");
  setting(*cmd, r, "stage1-lr", &C::stage1_lr, "Stage 1 peak learning rate (cosine to 10%)");
  setting(*cmd, r, "stage1-rope-theta", &C::stage1_rope_theta, "Stage 1 RoPE base");
  setting(*cmd, r, "save-every", &C::save_every, "Checkpoint interval of every run (0: end only)");
  setting(*cmd, r, "eval-samples", &C::eval_samples, "Prompts per (task, length)");
  setting(*cmd, r, "eval-ppl-samples", &C::eval_ppl_samples, "Held-out windows for the loss");
  setting(*cmd, r, "eval-template-set", &C::eval_template_set,
          "Prompt templates of the retrieval tasks (kv: the corpus's key-value lines)");
  setting(*cmd, r, "eval-seed", &C::eval_seed, "Seed of the retrieval prompts");
  setting(*cmd, r, "min-effect", &C::min_effect,
          "Smallest score difference (points) a verdict counts, besides the seed spread");
  list_setting(*cmd, r, "variants", &Args::variants,
               "Stage-1 variants, comma-separated (default all: full, intra_cont, intra_reset, "
               "anchor, full_fp32, anchor_fp32, anchor_exact)",
               [](C& c, const std::string& s) { c.variants = split_list("--variants", s); });
  list_setting(*cmd, r, "seeds", &Args::seeds, "Stage-1 seeds, comma-separated (default 1,2,3)",
               [](C& c, const std::string& s) {
                 c.seeds.clear();
                 for (const std::int64_t v : parse_int_list("--seeds", s, "not a seed", 0))
                   c.seeds.push_back(static_cast<std::uint64_t>(v));
               });
  list_setting(*cmd, r, "eval-tasks", &Args::eval_tasks,
               "Retrieval tasks of anchorctx eval, comma-separated (default niah_single_2, "
               "niah_multikey_1, niah_multikey_2; ppl always runs)",
               [](C& c, const std::string& s) { c.eval_tasks = split_list("--eval-tasks", s); });
  list_setting(*cmd, r, "eval-lengths", &Args::eval_lengths,
               "Evaluation lengths, comma-separated (default 512,1024,2048,4096,8192)",
               [](C& c, const std::string& s) {
                 c.eval_lengths = parse_int_list("--eval-lengths", s, "not a length >= 16", 16);
               });
  list_setting(*cmd, r, "eval-precision", &Args::eval_precision,
               "Precision every model is evaluated in: fp32 or bf16 (default bf16)",
               [](C& c, const std::string& s) {
                 c.eval_precision = parse_enum_option<model::Precision>("--eval-precision", s);
               });
  list_setting(*cmd, r, "bf16-compute", &Args::bf16_compute,
               "How bf16 runs in training (stage 0 and the bf16 variants) and evaluation: "
               "emulated (float32 products on bf16 values, the reference; default, as every "
               "study in docs/STUDY.md ran) or native (bf16 operands with float32 sums on "
               "AVX512_BF16 or AMX: faster)",
               [](C& c, const std::string& s) {
                 c.bf16_compute = parse_enum_option<model::Bf16Compute>("--bf16-compute", s);
               });
  add_threads_option(*cmd, a->threads, kRunThreadsHelp);
  cmd->callback([a, cmd] {
    // The settings given on the command line, for the command the report prints (a TOML file's
    // settings are in the file it names); read before the file's are added to the options.
    std::string given;
    for (const CLI::Option* opt : a->setting_options)
      if (opt->count() > 0)
        given += fmt::format(" {} {}", opt->get_name(), shell_word(opt->as<std::string>()));
    if (!a->config_file.empty()) apply_toml_options(*cmd, a->config_file);
    core::set_default_threads(a->threads);
    a->command_line = "anchorctx study";
    if (!a->config_file.empty()) a->command_line += " --config " + shell_word(a->config_file);
    if (a->quick) a->command_line += " --quick";
    if (a->scale != 1.0) a->command_line += fmt::format(" --scale {}", a->scale);
    a->command_line += given + " --out " + shell_word(a->out);
    run(*a);
  });
}

}  // namespace anchorctx::cli
