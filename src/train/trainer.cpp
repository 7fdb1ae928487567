#include "anchorctx/train/trainer.h"

#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/folder_lock.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/data/dataset_tokenizer.h"
#include "anchorctx/dist/parallel_layout.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/safetensors.h"
#include "anchorctx/train/checkpoint.h"
#include "anchorctx/train/data_parallel_optimizer.h"
#include "anchorctx/train/data_shard.h"
#include "anchorctx/train/metrics.h"
#include "anchorctx/train/resume_rules.h"
#include "anchorctx/train/run_report.h"
#include "anchorctx/train/run_tokenizer.h"

namespace anchorctx::train {

namespace fs = std::filesystem;

// One vocabulary: the keys are `anchorctx train`'s long option names, which are also its TOML
// keys, so this object written as a --config file gives the same run (tests/cli/train_cli.cmake
// does that). Left out: what does not change the run (--quiet, --json, --resume, --config).
nlohmann::json TrainOptions::to_json() const {
  nlohmann::json copy_files = nlohmann::json::array();
  for (const fs::path& f : extra_files)
    copy_files.push_back(f.string());
  return {{"data", data.string()},
          {"out", out.string()},
          {"preset", preset},
          {"model-config", config_json.string()},
          {"init-from", init_from.string()},
          {"precision", model::to_string(run.precision)},
          {"rope-mode", rope::to_string(run.rope_mode)},
          {"bf16-compute", model::to_string(run.bf16_compute)},
          {"checkpointing", run.checkpointing},
          {"threads", run.threads},
          {"loss-chunk", run.loss_chunk},
          {"mask", attention::to_string(batch.mask)},
          {"positions", rope::to_string(batch.positions)},
          {"mask-doc-boundaries", batch.mask_doc_boundaries},
          {"batch-windows", windows_per_micro_batch},
          {"grad-accum", grad_accum},
          {"sp", sp},
          {"steps", steps},
          {"schedule", to_string(schedule.kind)},
          {"lr", schedule.lr},
          {"min-lr", schedule.min_lr},
          {"warmup-steps", schedule.warmup_steps},
          {"warmup-start", to_string(schedule.warmup_start)},
          {"beta1", adamw.beta1},
          {"beta2", adamw.beta2},
          {"eps", adamw.eps},
          {"weight-decay", adamw.weight_decay},
          {"clip-grad-norm", clip_grad_norm},
          {"skip-nonfinite", skip_nonfinite},
          {"max-consecutive-skips", max_consecutive_skips},
          {"seed", seed},
          {"log-every", log_every},
          {"save-every", save_every},
          {"keep-last", keep_last},
          {"no-tensorboard", !tensorboard},
          {"no-copy-tokenizer", !copy_tokenizer},
          {"no-verify-data", !verify_data},
          {"copy-file", copy_files},
          {"world-size", world_size},
          {"shard-optimizer", shard_optimizer}};
}

void validate(const TrainOptions& o) {
  if (o.data.empty()) fail("train: --data is required (a folder written by anchorctx pack)");
  for (const fs::path& f : o.extra_files)
    check_extra_file(f);
  if (o.out.empty()) fail("train: --out is required (the run folder)");
  const int sources = !o.preset.empty() + !o.config_json.empty() + !o.init_from.empty();
  if (sources != 1)
    fail("train: give exactly one of --preset, --model-config and --init-from (got {})", sources);
  if (o.windows_per_micro_batch < 1) fail("train: --batch-windows must be at least 1");
  if (o.grad_accum < 1) fail("train: --grad-accum must be at least 1");
  if (o.steps < 1) fail("train: --steps must be at least 1");
  if (o.log_every < 1) fail("train: --log-every must be at least 1");
  if (o.save_every < 0) fail("train: --save-every must be 0 (end only) or positive");
  if (o.max_consecutive_skips < 1) fail("train: --max-consecutive-skips must be at least 1");
  if (o.world_size < 0) fail("train: --world-size must be 0 (as launched) or positive");
  // NaN compares false with every bound, so it is named here rather than taken as "off".
  if (!std::isfinite(o.clip_grad_norm) || o.clip_grad_norm < 0)
    fail("train: --clip-grad-norm must be 0 (off) or a positive number (got {})", o.clip_grad_norm);
  if (o.keep_last < 0) fail("train: --keep-last must be 0 (keep all) or positive");
  Schedule s = o.schedule;
  s.total_steps = o.steps;
  validate(s);
}

model::LlamaConfig resolve_model_config(const TrainOptions& o) {
  if (!o.preset.empty()) return model::preset(o.preset);
  if (!o.config_json.empty()) return model::load_config(o.config_json);
  return model::load_model_config(o.init_from);
}

namespace {

// "1h02m", "3m07s", "12s".
std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// The training progress line on stderr: redrawn in place on a terminal, one line per logged
// step otherwise (so that a log file shows the run).
class StepProgress {
 public:
  StepProgress(std::int64_t total, bool quiet) : total_(total), quiet_(quiet) {
    tty_ = isatty(STDERR_FILENO) != 0;
  }
  void update(const StepRecord& r, double tokens_per_s, double eta_s, bool log_line) {
    if (quiet_ || (!tty_ && !log_line)) return;
    const std::string line =
        fmt::format("step {}/{}  loss {:.4f}  lr {:.2e}  |g| {:.3f}  {:.0f} tok/s  ETA {}{}",
                    r.step, total_, r.loss, r.lr, r.grad_norm, tokens_per_s, format_duration(eta_s),
                    r.skipped ? "  (skipped: non-finite)" : "");
    if (tty_)
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    else
      std::fprintf(stderr, "%s\n", line.c_str());
    drawn_ = tty_;
  }
  void finish() {
    if (drawn_) std::fputc('\n', stderr);
    drawn_ = false;
  }

 private:
  std::int64_t total_;
  bool quiet_, tty_ = false, drawn_ = false;
};

}  // namespace

struct Trainer::Impl {
  data::Dataset dataset;
  dist::ParallelGroups groups;  // this rank's place in the run: its replica and token shard
  DataShard shard;              // which windows this replica reads
  std::unique_ptr<DataParallelOptimizer> optimizer;
  TrainerState state;
  std::vector<std::uint64_t> epoch_order;  // logical window order of the current epoch
  std::uint64_t epoch = ~0ull;
  std::unique_ptr<JsonlMetricsSink> jsonl;
  std::unique_ptr<TensorBoardSink> tensorboard;
  fs::path resumed_from;                 // the checkpoint a resume loaded
  std::optional<core::FolderLock> lock;  // the run folder's, held while the trainer lives

  explicit Impl(data::Dataset d) : dataset(std::move(d)) {}

  // Logical window at data cursor c: epoch 0 reads the dataset's own order; each later epoch a
  // seeded shuffle of it (the seed and the epoch decide it, so a resume recomputes it).
  std::uint64_t window_at(std::uint64_t cursor, std::uint64_t seed) {
    const std::uint64_t n = dataset.num_windows();
    const std::uint64_t e = cursor / n;
    if (e != epoch) {
      epoch_order = data::window_order(n, e > 0, seed * 0x9E3779B97F4A7C15ull + e);
      epoch = e;
    }
    return epoch_order[cursor % n];
  }
};

namespace {

// Ranks started with different options, data or model (an MPMD launch, per-host --config files
// or data) trained a mix of two runs and exited 0, or hung when their step counts differed:
// every rank compares the hash of its own with rank 0's, and all stop together when one differs.
void check_ranks_agree(dist::Communicator& comm, const std::string& run) {
  if (comm.world_size() == 1) return;
  std::string mine = core::hash_bytes_hex(run);
  std::string root = mine;
  comm.broadcast(std::as_writable_bytes(std::span(root.data(), root.size())), 0);
  std::int64_t differ = root != mine ? 1 : 0;
  comm.all_reduce_sum(std::span(&differ, 1));
  if (differ > 0)
    fail(
        "train: {} of {} ranks were started with options, data or a model other than rank "
        "0's{}: every rank must run the same command",
        differ, comm.world_size(), root != mine ? " (this one among them)" : "");
}

}  // namespace

Trainer::Trainer(TrainOptions options, dist::Communicator& comm)
    : options_(std::move(options)), comm_(comm) {
  validate(options_);
  if (options_.world_size != 0 && options_.world_size != comm_.world_size())
    fail("train: --world-size {} but {} processes were launched (mpirun -np {})",
         options_.world_size, comm_.world_size(), options_.world_size);
  options_.world_size = comm_.world_size();
  options_.schedule.total_steps = options_.steps;
  // Rank 0 alone speaks (progress, notes); every rank's errors reach the user (the CLI).
  const bool talk = !options_.quiet && comm_.rank() == 0;
  // Before any work: a world that is not a multiple of --sp is refused naming both numbers.
  dist::ParallelGroups groups = dist::make_parallel_groups(comm_, options_.sp);
  impl_ = std::make_unique<Impl>(data::Dataset::open(options_.data));
  impl_->groups = std::move(groups);
  impl_->shard = DataShard{options_.windows_per_micro_batch, options_.grad_accum,
                           impl_->groups.layout.dp_rank(), impl_->groups.layout.dp_size()};
  const data::Dataset& ds = impl_->dataset;
  if (ds.num_windows() == 0) fail("train: {} holds no windows", options_.data.string());
  // A micro-batch is allocated up front: one larger than the dataset would hold the same
  // windows several times over, and a mistyped count ran out of memory before any message.
  if (static_cast<std::uint64_t>(options_.windows_per_micro_batch) > ds.num_windows())
    fail("train: --batch-windows {} is more than the {} windows of {}",
         options_.windows_per_micro_batch, ds.num_windows(), options_.data.string());
  // A step's micro-batches are built before its first forward (the loss is normalised by the
  // step's target count), about 16 bytes a token (ids, targets, positions, the mask's plan):
  // --grad-accum 2147483647 ran out of memory after 10 s with no word of why. A step larger than
  // the dataset is fine otherwise (epochs wrap), so the bound is the machine's memory.
  {
    const double step_bytes = 16.0 * static_cast<double>(options_.grad_accum) *
                              static_cast<double>(options_.windows_per_micro_batch) *
                              static_cast<double>(ds.window_len());
    const auto machine = static_cast<double>(core::physical_memory_bytes());
    if (machine > 0 && step_bytes > machine)
      fail(
          "train: --grad-accum {} x --batch-windows {} windows of {} tokens per step take about "
          "{:.1f} GiB before the first forward, more than this machine's {:.1f} GiB",
          options_.grad_accum, options_.windows_per_micro_batch, ds.window_len(),
          step_bytes / (1 << 30), machine / (1 << 30));
  }
  if (options_.verify_data) {
    const auto start = std::chrono::steady_clock::now();
    ds.verify();
    if (talk)
      std::fprintf(stderr, "anchorctx: %s verified (content hashes, token ids) in %.2f s\n",
                   options_.data.string().c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  model::LlamaConfig config = resolve_model_config(options_);
  {
    // The data by content (a node-local copy may sit at another path), threads as each host has.
    nlohmann::json run = options_.to_json();
    run.erase("data");
    run.erase("threads");
    check_ranks_agree(comm_,
                      run.dump() + dataset_identity(ds).dump() + model::config_to_json(config));
  }
  if (ds.vocab_size() > config.vocab_size)
    fail("train: the dataset's tokenizer has {} ids but the model's vocabulary is {}",
         ds.vocab_size(), config.vocab_size);
  if (ds.seq_len() > config.max_position_embeddings && !config.rope_scaling.enabled() &&
      comm_.rank() == 0)
    std::fprintf(stderr,
                 "anchorctx: warning: windows of %d tokens exceed max_position_embeddings %lld\n",
                 ds.seq_len(), static_cast<long long>(config.max_position_embeddings));
  // transformers drops attention probabilities in training at this rate; the kernels have no
  // dropout. A warning rather than a refusal: the value is a training recipe's, and stays in the
  // checkpoints' config.json for a trainer that has it.
  if (config.attention_dropout > 0.0 && comm_.rank() == 0)
    std::fprintf(stderr,
                 "anchorctx: warning: the model's attention_dropout %g is not applied: anchorctx "
                 "trains without attention dropout (checkpoints keep the value in config.json)\n",
                 config.attention_dropout);
  model_ = std::make_unique<model::LlamaTrainModel>(config, options_.run);
  if (options_.sp > 1) {
    model::set_thread_invariant_gemms(true);
    model_->set_sequence_parallel(impl_->groups.sp.get());
  }
  // The gradients of every rank are summed over the world: each replica's ranks, and within a
  // sequence-parallel group each rank's token shard, hold partial sums of every parameter's.
  impl_->optimizer = std::make_unique<DataParallelOptimizer>(model_->layout(), options_.adamw,
                                                             comm_, options_.shard_optimizer);
  if (talk && (comm_.world_size() > 1 || options_.shard_optimizer))
    std::fprintf(stderr,
                 "anchorctx: %d processes (data parallel %d, sequence parallel %d), global batch "
                 "%llu windows; optimizer state %.1f MiB per rank%s\n",
                 comm_.world_size(), impl_->shard.dp_size, options_.sp,
                 static_cast<unsigned long long>(impl_->shard.global_batch()),
                 static_cast<double>(impl_->optimizer->state_bytes()) / (1024.0 * 1024.0),
                 options_.shard_optimizer ? " (sharded, ZeRO-1)" : "");

  // One writer per run folder, for the trainer's life: taken before anything in the folder is
  // read (a resume's checkpoint), after the inputs are checked (a start refused for its data or
  // model creates no folder).
  if (comm_.rank() == 0) impl_->lock.emplace(core::FolderLock::acquire(options_.out, "run folder"));
  std::optional<fs::path> checkpoint;
  if (options_.resume) {
    checkpoint = resume_checkpoint(options_.out);
    if (!checkpoint && comm_.rank() == 0 && options_.announce_new_run)
      std::fprintf(stderr, "anchorctx: --resume: no checkpoint in %s; starting a new run\n",
                   options_.out.string().c_str());
  }
  const nlohmann::json dataset_id = dataset_identity(ds);
  if (checkpoint) {
    LoadedCheckpoint ck = load_checkpoint(*checkpoint);
    // Resume rules (resume_rules.h): refuse what changes the run's meaning, report the rest.
    const ResumeDifferences diff = compare_for_resume(
        ck.state.options, options_.to_json(), ck.state.dataset, dataset_id, ck.config, config);
    if (!diff.refused.empty()) {
      std::string list;
      for (const Difference& d : diff.refused)
        list += (list.empty() ? "" : "; ") + d.text();
      fail(
          "train: --resume: {} (step {}) belongs to a run with other settings, and a resume "
          "continues that run: {}. Restore them, or start a new run in another --out "
          "(--init-from {} keeps its weights)",
          checkpoint->string(), ck.state.step, list, checkpoint->string());
    }
    for (const Difference& d : diff.allowed)
      if (comm_.rank() == 0)
        std::fprintf(stderr, "anchorctx: --resume: taking %s\n", d.text().c_str());
    impl_->resumed_from = *checkpoint;
    if (ck.exp_avg.empty())
      fail("train: --resume: {} holds no optimizer state", checkpoint->string());
    std::copy(ck.params.begin(), ck.params.end(), model_->params().begin());
    impl_->optimizer->restore(ck.optimizer_steps, ck.exp_avg, ck.exp_avg_sq);
    impl_->state = ck.state;
    step_ = ck.state.step;
    if (talk)
      std::fprintf(stderr, "anchorctx: resuming from %s (step %lld)\n",
                   checkpoint->string().c_str(), static_cast<long long>(step_));
  } else if (!options_.init_from.empty()) {
    // The model's tokenizer, where its folder has one, must be the one the data was packed with.
    if (data::folder_tokenizer_file(options_.init_from))
      data::require_dataset_tokenizer(ds, *data::load_tokenizer(options_.init_from.string()),
                                      "train --init-from", options_.init_from.string());
    model::load_parameters(model::SafetensorsReader::open(options_.init_from), model_->layout(),
                           model_->params());
  } else {
    model::init_parameters(model_->layout(), config, options_.seed, model_->params());
  }
  impl_->state.rng_state = options_.seed;
  impl_->state.options = options_.to_json();
  impl_->state.dataset = dataset_id;
  if (step_ >= options_.steps) return;  // nothing to do: no sink touches the run folder

  if (comm_.rank() == 0) {
    fs::create_directories(options_.out);
    impl_->jsonl =
        std::make_unique<JsonlMetricsSink>(options_.out / "metrics.jsonl", checkpoint ? step_ : 0);
    // After a resume, the restart mark makes TensorBoard drop a killed run's steps past the
    // checkpoint (metrics.jsonl is truncated instead).
    if (options_.tensorboard)
      impl_->tensorboard =
          std::make_unique<TensorBoardSink>(options_.out, checkpoint ? step_ + 1 : -1);
    if (options_.copy_tokenizer) {
      std::vector<fs::path> files = prepare_run_tokenizer(ds.meta(), options_.out);
      options_.extra_files.insert(options_.extra_files.begin(), files.begin(), files.end());
    }
    // The source model's generation defaults (its eos ids, sampling settings) go with every
    // checkpoint, as transformers' save_pretrained keeps them; a --copy-file of that name wins.
    if (!options_.init_from.empty()) {
      const fs::path generation = options_.init_from / "generation_config.json";
      const bool named =
          std::any_of(options_.extra_files.begin(), options_.extra_files.end(),
                      [&](const fs::path& f) { return f.filename() == generation.filename(); });
      std::error_code ec;
      if (!named && fs::is_regular_file(generation, ec)) options_.extra_files.push_back(generation);
    }
  }
}

Trainer::~Trainer() = default;

TrainResult Trainer::run(const std::function<void(const StepRecord&)>& on_step) {
  using clock = std::chrono::steady_clock;
  TrainResult result;
  result.config = model_->config();
  TrainerState& state = impl_->state;
  if (step_ >= options_.steps) {
    result.final_step = step_;
    result.nothing_to_do = true;
    result.last_checkpoint = impl_->resumed_from;
    return result;
  }
  StepProgress progress(options_.steps, options_.quiet || comm_.rank() != 0);
  const auto start = clock::now();
  std::int64_t tokens_run = 0;
  const std::int64_t first_step = step_;
  std::int64_t skipped_in_a_row = 0, updates = 0;  // --skip-nonfinite's divergence check

  // Collective (a sharded optimizer's moments are gathered); rank 0 writes the one checkpoint.
  const auto save = [&](double last_loss) {
    std::vector<float> exp_avg, exp_avg_sq;
    impl_->optimizer->gather_state(exp_avg, exp_avg_sq);
    // Finite gradients can still step the weights or moments past float's range (a learning
    // rate far too large): the next step's loss would stop the run, but this checkpoint would
    // already hold them (and prune a good one) and could not be resumed. Every rank holds the
    // same weights and gathered moments, so every rank stops here.
    const auto refuse = [&](std::string_view what, const model::NonFiniteTensor& bad) {
      progress.finish();
      fail(
          "train: step {}: the update left {} non-finite value(s) in the {} of '{}' (the first at "
          "element {}: {}) with a finite loss and gradient norm (a learning rate too large?): "
          "stopping before any checkpoint takes them",
          step_, bad.values.count, what, bad.tensor, bad.values.first, bad.values.value);
    };
    if (const auto bad = model::find_non_finite(model_->layout(), model_->params()))
      refuse("weights", *bad);
    for (const auto& [what, moment] :
         {std::pair{"first moment", &exp_avg}, std::pair{"second moment", &exp_avg_sq}})
      if (const auto bad = model::find_non_finite(model_->layout(), *moment)) refuse(what, *bad);
    if (comm_.rank() != 0) return;
    CheckpointData data;
    data.config = &model_->config();
    data.layout = &model_->layout();
    data.params = model_->params();
    data.optimizer_steps = impl_->optimizer->steps();
    data.exp_avg = exp_avg;
    data.exp_avg_sq = exp_avg_sq;
    state.step = step_;
    state.last_loss = last_loss;
    data.state = state;
    data.extra_files = options_.extra_files;
    if (impl_->jsonl) impl_->jsonl->flush();
    if (impl_->tensorboard) impl_->tensorboard->flush();
    result.last_checkpoint = save_checkpoint(options_.out, data);
    // The new checkpoint is safe: an older one that cannot be deleted costs disk, not the run.
    try {
      prune_checkpoints(options_.out, options_.keep_last);
    } catch (const Error& e) {
      std::fprintf(stderr, "anchorctx: warning: --keep-last: %s (training goes on)\n", e.what());
    }
  };

  while (step_ < options_.steps) {
    const auto t0 = clock::now();
    // The step's micro-batches, built first so the loss can be normalised by the step's
    // target count (summed over ranks) before any backward.
    std::vector<Batch> micro;
    for (std::int64_t m = 0; m < options_.grad_accum; ++m) {
      std::vector<std::uint64_t> windows;
      for (std::int64_t w = 0; w < options_.windows_per_micro_batch; ++w)
        windows.push_back(
            impl_->window_at(impl_->shard.cursor(state.data_cursor, m, w), options_.seed));
      micro.push_back(make_batch(impl_->dataset, windows, options_.batch));
    }
    state.data_cursor += impl_->shard.global_batch();
    // Targets, input tokens, and whether a rank was asked to stop (Ctrl-C, SIGTERM): summed
    // with the counts, so that every rank stops at the same step boundary.
    double counts[3] = {0.0, 0.0, core::interrupt_signal() != 0 ? 1.0 : 0.0};
    for (const Batch& b : micro) {
      // This rank's token shard of the window (all of it without sequence parallelism), so
      // that the sums over ranks count each token once.
      const auto [t0, t1] = model_->token_shard(static_cast<std::int64_t>(b.input_ids.size()));
      for (std::int64_t t = t0; t < t1; ++t)
        counts[0] += b.targets[static_cast<std::size_t>(t)] >= 0 ? 1.0 : 0.0;
      counts[1] += static_cast<double>(t1 - t0);
    }
    comm_.all_reduce_sum(std::span<double>(counts, 3));
    if (counts[2] > 0) {
      progress.finish();
      const auto last = latest_checkpoint(options_.out);
      const int sig = core::interrupt_signal();
      fail("interrupted ({}) before step {}: {}",
           sig != 0 ? core::signal_name(sig) : std::string("on another rank"), step_ + 1,
           last ? fmt::format("the last checkpoint is {}; {}", last->string(),
                              options_.continue_hint)
                : std::string("no checkpoint was written"));
    }
    const double scale = counts[0] > 0 ? 1.0 / counts[0] : 0.0;

    model_->zero_grads();
    double loss_sum = 0.0;
    for (const Batch& b : micro)
      loss_sum += model_->forward_backward(b.view(), scale).loss;
    // The one place gradients cross ranks (summed in rank order, clipped by the global norm).
    comm_.all_reduce_sum(std::span<double>(&loss_sum, 1));

    StepRecord r;
    r.step = step_ + 1;
    r.loss = counts[0] > 0 ? loss_sum / counts[0] : 0.0;
    r.lr = options_.schedule.lr_at(step_);
    r.grad_norm = impl_->optimizer->reduce_and_clip(model_->grads(), options_.clip_grad_norm);
    r.tokens = static_cast<std::int64_t>(counts[1]);
    if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
      if (!options_.skip_nonfinite) {
        progress.finish();
        throw TrainingDiverged(fmt::format(
            "train: step {}: non-finite {} ({}); stopping before any checkpoint takes it{}", r.step,
            std::isfinite(r.loss) ? "gradient norm" : "loss",
            std::isfinite(r.loss) ? r.grad_norm : r.loss,
            options_.nonfinite_hint.empty() ? "" : " (" + options_.nonfinite_hint + ")"));
      }
      r.skipped = true;
    } else {
      impl_->optimizer->step(model_->params(), model_->grads(), r.lr);
    }
    ++step_;
    state.step = step_;
    state.tokens_seen += r.tokens;
    tokens_run += r.tokens;
    r.step_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    result.steps.push_back(r);

    const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
    const double tps = elapsed > 0 ? static_cast<double>(tokens_run) / elapsed : 0.0;
    const double eta = static_cast<double>(options_.steps - step_) * elapsed /
                       static_cast<double>(step_ - first_step);
    const bool log_now = step_ % options_.log_every == 0 || step_ == options_.steps;
    if (log_now) {
      StepMetrics m{step_,
                    {{"loss", r.loss},
                     {"lr", r.lr},
                     {"grad_norm", r.grad_norm},
                     {"step_ms", r.step_ms},
                     {"tokens_per_s", tps},
                     {"tokens_seen", static_cast<double>(state.tokens_seen)},
                     {"skipped", r.skipped ? 1.0 : 0.0}}};
      if (impl_->jsonl) impl_->jsonl->write(m);
      if (impl_->tensorboard) impl_->tensorboard->write(m);
    }
    progress.update(r, tps, eta, log_now);
    skipped_in_a_row = r.skipped ? skipped_in_a_row + 1 : 0;
    updates += r.skipped ? 0 : 1;
    if (r.skipped && (skipped_in_a_row >= options_.max_consecutive_skips ||
                      (step_ == options_.steps && updates == 0))) {
      progress.finish();
      if (impl_->jsonl) impl_->jsonl->flush();
      if (impl_->tensorboard) impl_->tensorboard->flush();
      if (updates == 0 && step_ == options_.steps)
        fail(
            "train: every one of the {} steps run was skipped as non-finite; nothing was trained "
            "and no checkpoint is written",
            step_ - first_step);
      throw TrainingDiverged(fmt::format(
          "train: step {}: {} steps in a row skipped as non-finite (--max-consecutive-skips {}): "
          "the run has diverged; stopping (the last checkpoint is kept)",
          r.step, skipped_in_a_row, options_.max_consecutive_skips));
    }
    if ((options_.save_every > 0 && step_ % options_.save_every == 0) || step_ == options_.steps)
      save(r.loss);
    if (on_step) on_step(r);
  }
  progress.finish();
  if (impl_->jsonl) impl_->jsonl->flush();
  if (impl_->tensorboard) impl_->tensorboard->flush();
  const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
  result.tokens_per_s = elapsed > 0 ? static_cast<double>(tokens_run) / elapsed : 0.0;
  result.final_step = step_;
  // After the timing: report.md and its plots, from the run folder (the whole run's metrics).
  if (comm_.rank() == 0) write_run_report_or_warn(options_.out);
  return result;
}

}  // namespace anchorctx::train
