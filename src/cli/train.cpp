// `anchorctx train`: a Llama-family model on a packed dataset (train/trainer.h).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/dist/world.h"
#include "anchorctx/train/checkpoint.h"
#include "anchorctx/train/trainer.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {

namespace {

struct TrainArgs {
  train::TrainOptions o;
  std::optional<rope::RopeMode> rope_mode;  // default: per precision
  std::string bf16_compute;                 // empty: model::default_bf16_compute()
  std::vector<std::string> extra_files;
  bool no_tensorboard = false, no_copy_tokenizer = false, json = false;
  // --no-verify-data as its own flag, so the recorded `no-verify-data = false` reads back as such.
  bool verify_data = false, no_verify_data = false;
  std::string config_file;
};

void run_train(TrainArgs& a) {
  core::install_interrupt_handlers();  // Ctrl-C stops at the next step boundary
  train::TrainOptions& o = a.o;
  o.run.rope_mode = a.rope_mode.value_or(model::default_rope_mode(o.run.precision));
  o.run.bf16_compute = resolve_bf16_compute(a.bf16_compute, o.run.precision, o.quiet);
  o.tensorboard = !a.no_tensorboard;
  o.copy_tokenizer = !a.no_copy_tokenizer;
  o.verify_data = !a.no_verify_data;
  for (const std::string& f : a.extra_files)
    o.extra_files.emplace_back(f);
  if (!o.resume && !train::list_checkpoints(o.out).empty())
    fail(
        "train: {} already holds checkpoints; pass --resume to continue that run or choose "
        "another --out",
        o.out.string());

  // One process, or one of mpirun's (dist/world.h: MPI lives as long as `world`).
  const std::unique_ptr<dist::Communicator> world = dist::make_world_communicator();
  train::TrainResult r;
  dist::run_or_abort(*world, [&] {
    train::Trainer trainer(o, *world);
    r = trainer.run();
  });
  if (world->rank() != 0) return;  // rank 0 reports the run
  if (r.nothing_to_do) {
    // Said even with --quiet: it is the run's whole outcome.
    std::fprintf(stderr,
                 "anchorctx: --resume: nothing to do: the checkpoint %s is at step %lld and "
                 "--steps is %lld\n",
                 r.last_checkpoint.string().c_str(), static_cast<long long>(r.final_step),
                 static_cast<long long>(o.steps));
    if (a.json)
      std::printf("%s\n", nlohmann::json{{"steps", r.final_step},
                                         {"nothing_to_do", true},
                                         {"checkpoint", r.last_checkpoint.string()},
                                         {"out", o.out.string()}}
                              .dump()
                              .c_str());
    return;
  }
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
  o.run.precision = model::Precision::bf16;
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a Llama-family model on a packed dataset (anchorctx pack), with checkpoints in the "
      "run folder that transformers loads as they are. Options may come from a TOML file "
      "(--config; keys are the long option names without dashes).");
  cmd->add_option("--config", args->config_file,
                  "A TOML file of options (key = value, keys as the long options without dashes; "
                  "the command line wins)");
  cmd->add_option("--data", o.data, "Packed dataset folder (required)");
  auto* verify = cmd->add_flag("--verify-data", args->verify_data,
                               "Hash the dataset's files against its meta.json before the first "
                               "step (the default; opening checks only its structure, and each "
                               "window read its token ids)");
  cmd->add_flag("--no-verify-data", args->no_verify_data, "Skip that hash check")->excludes(verify);
  cmd->add_option("--out", o.out,
                  "Run folder: checkpoints/, metrics.jsonl, TensorBoard events, report.md with "
                  "plots/ (required)");
  cmd->add_option("--preset", o.preset,
                  fmt::format("Model preset: {}", fmt::join(model::preset_names(), ", ")));
  cmd->add_option("--model-config", o.config_json, "A HuggingFace config.json (random init)");
  cmd->add_option("--init-from", o.init_from, "A model folder to start from (its weights)");
  add_enum_option(*cmd, "--precision", o.run.precision,
                  "fp32, or bf16 (fp32 master weights; GEMMs per --bf16-compute)");
  cmd->add_option("--bf16-compute", args->bf16_compute, kBf16ComputeHelpWithPrecision);
  add_enum_option(*cmd, "--rope-mode", args->rope_mode,
                  "fp32 (with fp32), hf_bf16 or exact (with bf16); default: per precision");
  cmd->add_flag("--checkpointing", o.run.checkpointing,
                "Recompute each layer in the backward (activation memory O(layers*T*H))");
  add_enum_option(*cmd, "--mask", o.batch.mask, "Attention mask");
  add_enum_option(*cmd, "--positions", o.batch.positions, "Position ids");
  cmd->add_flag("--mask-doc-boundaries", o.batch.mask_doc_boundaries,
                "No loss on a document's first token where it is predicted from the previous "
                "document's last token; kept where an anchor predicts it (document 1 after the "
                "shared anchor; per_doc: each document's first token after its own anchor)");
  cmd->add_option("--batch-windows", o.windows_per_micro_batch, "Windows per micro-batch")
      ->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")
      ->capture_default_str();
  cmd->add_option(
         "--sp", o.sp,
         "Sequence-parallel degree (Ulysses): this many processes share each window, "
         "each computing a contiguous shard of its tokens and, around attention, a "
         "share of the heads; the number of processes must be a multiple (docs/DISTRIBUTED_SP.md)")
      ->capture_default_str();
  cmd->add_option("--steps", o.steps, "Optimizer steps")->capture_default_str();
  cmd->add_option("--lr", o.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o.schedule.min_lr, "Final learning rate (linear, cosine)")
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.schedule.warmup_steps, "Linear warmup steps")
      ->capture_default_str();
  add_enum_option(*cmd, "--schedule", o.schedule.kind, "Learning-rate decay after the warmup");
  add_enum_option(*cmd, "--warmup-start", o.schedule.warmup_start,
                  "Where the linear warmup starts: one_step (lr*(step+1)/warmup, the first "
                  "step already trains) or zero (lr*step/warmup, as transformers' "
                  "get_*_schedule_with_warmup: the first step runs at lr 0)");
  cmd->add_option("--beta1", o.adamw.beta1, "AdamW beta1")->capture_default_str();
  cmd->add_option("--beta2", o.adamw.beta2, "AdamW beta2")->capture_default_str();
  cmd->add_option("--eps", o.adamw.eps, "AdamW epsilon")->capture_default_str();
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay")
      ->capture_default_str();
  cmd->add_option("--clip-grad-norm", o.clip_grad_norm, "Global gradient-norm clip (0: off)")
      ->capture_default_str();
  cmd->add_flag("--skip-nonfinite", o.skip_nonfinite,
                "Skip a step whose loss or gradient is not finite (default: stop with an error)");
  cmd->add_option("--max-consecutive-skips", o.max_consecutive_skips,
                  "With --skip-nonfinite: stop with an error after this many skipped steps in a "
                  "row (a diverged run); a run whose every step was skipped fails too")
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of the initialisation and of later epochs' order")
      ->capture_default_str();
  cmd->add_option("--log-every", o.log_every, "Steps between metric records")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Steps between checkpoints (0: at the end)")
      ->capture_default_str();
  cmd->add_option("--keep-last", o.keep_last, "Checkpoints kept (0: all)")->capture_default_str();
  cmd->add_flag("--resume", o.resume,
                "Continue from the newest checkpoint in --out: options that change the run's "
                "meaning (data, model, precision, rope mode, mask, positions, batch, seed, "
                "AdamW) must match it, changes of steps, lr schedule, cadence and threads are "
                "taken and reported; without a checkpoint a new run starts (docs/RELIABILITY.md)");
  cmd->add_option("--copy-file", args->extra_files,
                  "More files copied into every checkpoint (one of the tokenizer's names "
                  "replaces its file)");
  cmd->add_flag("--no-copy-tokenizer", args->no_copy_tokenizer,
                "Do not copy the dataset's tokenizer into each checkpoint (by default it is: "
                "the byte tokenizer as a HuggingFace tokenizer.json, any other as its files)");
  cmd->add_option("--world-size", o.world_size,
                  "Processes the run expects (0: as launched; under mpirun -np N: N). Recorded, "
                  "so a resume at another world size is refused")
      ->capture_default_str();
  cmd->add_flag("--shard-optimizer", o.shard_optimizer,
                "ZeRO-1 under mpirun: each rank keeps the AdamW moments of 1/N of the parameters "
                "(gradients reduce-scattered, parameters all-gathered); the same result");
  add_threads_option(*cmd, o.run.threads, kRunThreadsHelp);
  cmd->add_option("--loss-chunk", o.run.loss_chunk, "Tokens per LM-head/cross-entropy chunk")
      ->capture_default_str();
  cmd->add_flag("--no-tensorboard", args->no_tensorboard, "Do not write TensorBoard events");
  cmd->add_flag("--quiet", o.quiet, "No progress on stderr");
  cmd->add_flag("--json", args->json,
                "Print one JSON object (steps, loss_first, loss_last, tokens_per_s, checkpoint)");
  cmd->callback([args, cmd] {
    if (!args->config_file.empty()) apply_toml_options(*cmd, args->config_file);
    core::set_default_threads(args->o.run.threads);
    run_train(*args);
  });
}

}  // namespace anchorctx::cli
