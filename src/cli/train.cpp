// `anchorctx train`: a Llama-family model on a packed dataset (train/trainer.h).
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/train/checkpoint.h"
#include "anchorctx/train/trainer.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"

namespace anchorctx::cli {

namespace {

struct TrainArgs {
  train::TrainOptions o;
  std::string precision = "bf16", rope_mode, mask = "anchor", positions = "anchor";
  std::string bf16_compute;  // empty: model::default_bf16_compute()
  std::string schedule = "cosine";
  std::vector<std::string> extra_files;
  bool no_tensorboard = false, no_copy_tokenizer = false, json = false;
  std::string config_file;
};

void run_train(TrainArgs& a) {
  train::TrainOptions& o = a.o;
  const auto precision = model::parse_precision(a.precision);
  if (!precision) throw CLI::ValidationError("--precision", "expected fp32 or bf16");
  o.run.precision = *precision;
  o.run.rope_mode = model::default_rope_mode(*precision);
  if (!a.rope_mode.empty()) {
    const auto mode = rope::parse_rope_mode(a.rope_mode);
    if (!mode) throw CLI::ValidationError("--rope-mode", "expected fp32, hf_bf16 or exact");
    o.run.rope_mode = *mode;
  }
  o.run.bf16_compute = resolve_bf16_compute(a.bf16_compute, *precision, o.quiet);
  const auto mask = attention::parse_mask_kind(a.mask);
  if (!mask) throw CLI::ValidationError("--mask", "expected causal, intra_doc or anchor");
  o.batch.mask = *mask;
  const auto positions = data::parse_position_policy(a.positions);
  if (!positions) throw CLI::ValidationError("--positions", "expected global, reset or anchor");
  o.batch.positions = *positions;
  const auto kind = train::parse_schedule_kind(a.schedule);
  if (!kind) throw CLI::ValidationError("--schedule", "expected constant, linear or cosine");
  o.schedule.kind = *kind;
  o.tensorboard = !a.no_tensorboard;
  o.copy_tokenizer = !a.no_copy_tokenizer;
  for (const std::string& f : a.extra_files)
    o.extra_files.emplace_back(f);
  if (!o.resume && !train::list_checkpoints(o.out).empty())
    fail(
        "train: {} already holds checkpoints; pass --resume to continue that run or choose "
        "another --out",
        o.out.string());

  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(o, *comm);
  const train::TrainResult r = trainer.run();
  if (a.json) {
    nlohmann::json j = {{"steps", r.final_step},
                        {"tokens_per_s", r.tokens_per_s},
                        {"checkpoint", r.last_checkpoint.string()},
                        {"out", o.out.string()}};
    if (!r.steps.empty()) {
      j["loss_first"] = r.steps.front().loss;
      j["loss_last"] = r.steps.back().loss;
    }
    std::printf("%s\n", j.dump().c_str());
  } else if (!o.quiet) {
    std::fprintf(stderr, "anchorctx: trained to step %lld; checkpoint %s\n",
                 static_cast<long long>(r.final_step), r.last_checkpoint.string().c_str());
  }
}

}  // namespace

void register_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  train::TrainOptions& o = args->o;
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a Llama-family model on a packed dataset (anchorctx pack), with checkpoints in the "
      "run folder that transformers loads as they are. Options may come from a TOML file "
      "(--config; keys are the long option names without dashes).");
  cmd->add_option("--config", args->config_file,
                  "A TOML file of options (key = value, keys as the long options without dashes; "
                  "the command line wins)");
  cmd->add_option("--data", o.data, "Packed dataset folder (required)");
  cmd->add_option("--out", o.out,
                  "Run folder: checkpoints/, metrics.jsonl, TensorBoard events, report.md with "
                  "plots/ (required)");
  cmd->add_option("--preset", o.preset, "Model preset: tiny or reference");
  cmd->add_option("--model-config", o.config_json, "A HuggingFace config.json (random init)");
  cmd->add_option("--init-from", o.init_from, "A model folder to start from (its weights)");
  cmd->add_option("--precision", args->precision,
                  "fp32, or bf16 (fp32 master weights; GEMMs per --bf16-compute)")
      ->capture_default_str();
  cmd->add_option("--bf16-compute", args->bf16_compute, kBf16ComputeHelp);
  cmd->add_option("--rope-mode", args->rope_mode,
                  "fp32 (with fp32), hf_bf16 or exact (with bf16); default: per precision");
  cmd->add_flag("--checkpointing", o.run.checkpointing,
                "Recompute each layer in the backward (activation memory O(layers*T*H))");
  cmd->add_option("--mask", args->mask, "Attention mask: causal, intra_doc or anchor")
      ->capture_default_str();
  cmd->add_option("--positions", args->positions, "Position ids: global, reset or anchor")
      ->capture_default_str();
  cmd->add_flag("--mask-doc-boundaries", o.batch.mask_doc_boundaries,
                "No loss on a document's first token (predicted from another document)");
  cmd->add_option("--batch-windows", o.windows_per_micro_batch, "Windows per micro-batch")
      ->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")
      ->capture_default_str();
  cmd->add_option("--steps", o.steps, "Optimizer steps")->capture_default_str();
  cmd->add_option("--lr", o.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o.schedule.min_lr, "Final learning rate (linear, cosine)")
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.schedule.warmup_steps, "Linear warmup steps")
      ->capture_default_str();
  cmd->add_option("--schedule", args->schedule, "constant, linear or cosine")
      ->capture_default_str();
  cmd->add_option("--beta1", o.adamw.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o.adamw.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--eps", o.adamw.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", o.clip_grad_norm, "Global gradient-norm clip (0: off)")
      ->capture_default_str();
  cmd->add_flag("--skip-nonfinite", o.skip_nonfinite,
                "Skip a step whose loss or gradient is not finite (default: stop with an error)");
  cmd->add_option("--seed", o.seed, "Seed of the initialisation and of later epochs' order")
      ->capture_default_str();
  cmd->add_option("--log-every", o.log_every, "Steps between metric records")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Steps between checkpoints (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--keep-last", o.keep_last, "Checkpoints kept (0: all)")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from the newest checkpoint in --out");
  cmd->add_option("--copy-file", args->extra_files,
                  "More files copied into every checkpoint (one of the tokenizer's names "
                  "replaces its file)");
  cmd->add_flag("--no-copy-tokenizer", args->no_copy_tokenizer,
                "Do not copy the dataset's tokenizer into each checkpoint (by default it is: "
                "the byte tokenizer as a HuggingFace tokenizer.json, any other as its files)");
  cmd->add_option("--threads", o.run.threads, "Attention kernel threads (0: all)")
      ->capture_default_str();
  cmd->add_option("--loss-chunk", o.run.loss_chunk, "Tokens per LM-head/cross-entropy chunk")
      ->capture_default_str();
  cmd->add_flag("--no-tensorboard", args->no_tensorboard, "Do not write TensorBoard events");
  cmd->add_flag("--quiet", o.quiet, "No progress on stderr");
  cmd->add_flag("--json", args->json,
                "Print one JSON object (steps, loss_first, loss_last, tokens_per_s, checkpoint)");
  cmd->callback([args, cmd] {
    if (!args->config_file.empty()) apply_toml_options(*cmd, args->config_file);
    run_train(*args);
  });
}

}  // namespace anchorctx::cli
