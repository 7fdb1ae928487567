// `anchorctx bench train`: the time of a training step (forward, backward, AdamW) of a
// Llama-family model on one synthetic packed window, its throughput, its model FLOPs
// utilisation against the sgemm rate measured in the same run, and the peak memory.
#include <sys/resource.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/core/blas.h"
#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/doc_lengths.h"
#include "anchorctx/data/packer.h"
#include "anchorctx/dist/parallel_layout.h"
#include "anchorctx/dist/world.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_train.h"
#include "anchorctx/model/op_profile.h"
#include "anchorctx/rope/positions.h"
#include "anchorctx/train/data_parallel_optimizer.h"
#include "anchorctx/train/optimizer.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/cpu_json.h"
#include "cli/enum_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {

namespace {

struct BenchTrainArgs {
  std::string preset = "reference", config_json;
  std::int32_t seq_len = 4096;
  attention::MaskKind mask = attention::MaskKind::anchor;
  model::Precision precision = model::Precision::bf16;
  std::optional<rope::RopeMode> rope_mode;  // default: per precision
  std::string docs = "lognormal:1024:1.0";
  std::string checkpointing = "auto";
  std::string bf16_compute;  // empty: model::default_bf16_compute()
  int steps = 3, warmup = 1, threads = 0;
  int sp = 1;  // sequence-parallel degree (one process: 1)
  std::uint64_t seed = 0;
  bool json = false, profile = false;
};

// CPU time of the whole process (all threads) so far.
double process_cpu_ms() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return (static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
          static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-3);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

// Model FLOPs of one training step (forward + backward = 3 x forward), counting useful work
// only: 6 x (matrix parameters, LM head included, embedding lookup excluded) x T, plus the
// attention products over the visible (query, key) pairs: 2 GEMMs forward, 5 backward, each
// 2 x pairs x D per query head. Recomputation (checkpointing) is not counted, as MFU demands.
double model_flops(const model::LlamaConfig& c, std::int64_t tokens, std::int64_t visible_pairs) {
  const double attention =
      7.0 * 2.0 * static_cast<double>(visible_pairs) * static_cast<double>(c.resolved_head_dim()) *
      static_cast<double>(c.num_attention_heads) * static_cast<double>(c.num_hidden_layers);
  return 6.0 * model::matrix_parameter_count(c) * static_cast<double>(tokens) + attention;
}

// The timed steps of run_bench_train on `world`, and the report (rank 0).
void bench_steps(const BenchTrainArgs& a, const model::LlamaConfig& config,
                 const model::RunOptions& run, model::LlamaTrainModel& model,
                 dist::Communicator& world) {
  const dist::ParallelGroups groups = dist::make_parallel_groups(world, a.sp);
  if (a.sp > 1) {
    model::set_thread_invariant_gemms(true);
    model.set_sequence_parallel(groups.sp.get());
  }
  train::DataParallelOptimizer optimizer(model.layout(), {}, world, false);
  const bool report = world.rank() == 0;

  // One window: an anchor token, then documents by --docs; random token ids.
  const data::DocLengthSpec spec = data::parse_doc_length_spec(a.docs);
  const auto lengths = data::generate_doc_lengths(spec, 1, a.seq_len, a.seed, 1);
  std::vector<std::int32_t> starts{0};
  for (std::size_t d = 0; d + 1 < lengths[0].size(); ++d)
    starts.push_back(starts.back() + lengths[0][d]);
  const auto layout = attention::AttentionLayout::from_arrays(
      std::vector<std::int32_t>{0, a.seq_len},
      std::vector<std::int32_t>{0, static_cast<std::int32_t>(starts.size())}, starts,
      std::vector<std::int32_t>{1});
  const attention::BlockPlan plan = attention::BlockPlan::build(layout, a.mask);
  std::mt19937_64 rng(a.seed);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(a.seq_len)), targets(ids.size());
  for (auto& t : ids)
    t = static_cast<std::int32_t>(rng() % config.vocab_size);
  for (std::size_t t = 0; t < ids.size(); ++t)
    targets[t] = t + 1 < ids.size() ? ids[t + 1] : static_cast<std::int32_t>(rng() % 7);
  const std::vector<std::int32_t> positions =
      rope::position_ids(rope::PositionPolicy::anchor, starts, a.seq_len, std::vector{0});
  const model::TrainBatch batch{ids, targets, positions, &plan};

  const int threads = core::resolve_threads(a.threads);
  if (!a.json && report)
    std::fprintf(stderr, "bench train: %s, %lld parameters, T=%d, %s, %s, checkpointing %s\n",
                 a.config_json.empty() ? a.preset.c_str() : a.config_json.c_str(),
                 static_cast<long long>(model.layout().count()), a.seq_len,
                 std::string(attention::to_string(a.mask)).c_str(),
                 std::string(model::to_string(a.precision)).c_str(),
                 run.checkpointing ? "on" : "off");
  std::vector<double> times, cpu_times, comm_times, wait_times;
  double loss = 0.0, optimizer_ms = 0.0, optimizer_cpu_ms = 0.0;
  for (int s = 0; s < a.warmup + a.steps; ++s) {
    if (a.profile && s == a.warmup) model::set_op_profile(true);
    const core::Stopwatch watch;
    const double cpu0 = process_cpu_ms();
    model.zero_grads();
    const model::LossSum l = model.forward_backward(batch, 1.0 / a.seq_len);
    const core::Stopwatch wait_watch;
    world.barrier();
    const double wait_ms = wait_watch.elapsed_ms();
    // The optimizer's time (profile) covers the gradient sum over ranks, clipping and AdamW.
    const core::Stopwatch optimizer_watch;
    const double optimizer_cpu0 = process_cpu_ms();
    const core::Stopwatch comm_watch;
    optimizer.reduce_and_clip(model.grads(), 1.0);
    const double comm_ms = comm_watch.elapsed_ms();
    optimizer.step(model.params(), model.grads(), 1e-4);
    const double ms = watch.elapsed_ms();
    const double cpu_ms = process_cpu_ms() - cpu0;
    loss = l.loss / static_cast<double>(l.tokens);
    if (s >= a.warmup) {
      times.push_back(ms);
      cpu_times.push_back(cpu_ms);
      comm_times.push_back(comm_ms);
      wait_times.push_back(wait_ms);
      optimizer_ms += optimizer_watch.elapsed_ms();
      optimizer_cpu_ms += process_cpu_ms() - optimizer_cpu0;
    }
    if (!a.json && report)
      std::fprintf(stderr, "  step %d: %.1f ms (CPU %.1f ms), loss %.4f%s\n", s, ms, cpu_ms, loss,
                   s < a.warmup ? " (warm-up)" : "");
  }
  model::set_op_profile(false);
  const double step_ms = core::median(times);
  const double comm_ms = core::median(comm_times), wait_ms = core::median(wait_times);
  // What the all-reduce moves per rank: its block of every rank's gradients out and in, then
  // the summed block to every rank and theirs back: 2 (N-1)/N of the float32 buffer each way.
  const int ranks = world.world_size();
  const double reduce_bytes =
      2.0 * (ranks - 1) / ranks * 4.0 * static_cast<double>(model.layout().total());
  // Per kind of operation, in milliseconds per timed step (means): wall time and the main
  // thread's CPU time (model/op_profile.h); the optimizer (clipping and AdamW; process CPU time)
  // and what no scope covered.
  nlohmann::json profile;
  if (a.profile) {
    const model::OpTimes op = model::op_profile();
    double wall_total = 0.0, cpu_total = 0.0, wall_covered = 0.0;
    for (const double t : times)
      wall_total += t;
    for (const double t : cpu_times)
      cpu_total += t;
    for (const auto& entry : model::kOpNames) {
      const auto i = static_cast<std::size_t>(entry.value);
      profile["wall"][std::string(entry.name)] = op.wall_ms[i] / a.steps;
      profile["cpu"][std::string(entry.name)] = op.cpu_ms[i] / a.steps;
      wall_covered += op.wall_ms[i];
    }
    profile["wall"]["optimizer"] = optimizer_ms / a.steps;
    profile["cpu"]["optimizer"] = optimizer_cpu_ms / a.steps;
    profile["wall"]["unattributed"] = (wall_total - wall_covered - optimizer_ms) / a.steps;
    profile["step_wall_ms_mean"] = wall_total / a.steps;
    profile["step_cpu_ms_mean"] = cpu_total / a.steps;
  }
  const double sgemm = core::measure_sgemm_gflops(2048, threads, 3);
  // The bf16 yardstick: 2048^3 through oneDNN (0 where the native path is unavailable).
  const double bf16_gemm = model::measure_bf16_gemm_gflops(2048, threads, 3);
  const double flops = model_flops(config, a.seq_len, layout.visible_pairs(a.mask));
  const double achieved = flops / (step_ms * 1e-3) / 1e9;
  nlohmann::json j = {{"preset", a.config_json.empty() ? a.preset : ""},
                      {"config_json", a.config_json},
                      {"parameters", model.layout().count()},
                      {"seq_len", a.seq_len},
                      {"mask", attention::to_string(a.mask)},
                      {"docs", a.docs},
                      {"num_documents", starts.size()},
                      {"precision", model::to_string(a.precision)},
                      {"rope_mode", std::string(rope::to_string(run.rope_mode))},
                      // null in fp32, as train records it: no bf16 is computed at all
                      {"bf16_compute", a.precision == model::Precision::bf16
                                           ? nlohmann::json(model::to_string(run.bf16_compute))
                                           : nlohmann::json(nullptr)},
                      {"checkpointing", run.checkpointing},
                      {"threads", threads},
                      {"steps", a.steps},
                      {"step_ms", step_ms},
                      {"step_ms_all", times},
                      {"step_cpu_ms", core::median(cpu_times)},
                      {"tokens_per_s", a.seq_len / (step_ms * 1e-3)},
                      {"model_flops_per_step", flops},
                      {"model_gflops", achieved},
                      {"sgemm_gflops", sgemm},
                      {"mfu", achieved / sgemm},
                      {"bf16_gemm_gflops", bf16_gemm},
                      {"loss", loss},
                      {"processes", world.world_size()},
                      {"comm_ms", comm_ms},
                      {"comm_share", comm_ms / step_ms},
                      {"wait_ms", wait_ms},
                      {"gradient_bytes_sent_per_rank", reduce_bytes},
                      {"activation_bytes_estimate", model.activation_bytes(a.seq_len)},
                      {"peak_rss_mb", peak_rss_mb()},
                      {"blas", core::blas_name()},
                      {"cpu", cpu_json(core::cpu_info())}};
  if (a.profile) j["profile_ms_per_step"] = profile;
  if (!report) return;
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("cpu: %s\n", core::describe(core::cpu_info()).c_str());
    std::printf(
        "step %.1f ms (median of %d), %.0f tokens/s, %.1f model GFLOP/s = %.1f%% of "
        "sgemm %.1f GFLOP/s, peak RSS %.0f MB\n",
        step_ms, a.steps, a.seq_len / (step_ms * 1e-3), achieved, 100 * achieved / sgemm, sgemm,
        peak_rss_mb());
    if (world.world_size() > 1)
      std::printf(
          "%d processes: gradient sum over ranks %.1f ms (median) = %.1f%% of the step, "
          "%.1f MB sent per rank; waiting for the slowest rank %.1f ms\n",
          ranks, comm_ms, 100 * comm_ms / step_ms, reduce_bytes / 1e6, wait_ms);
    if (bf16_gemm > 0)
      std::printf("bf16 GEMM yardstick (oneDNN, 2048^3): %.1f GFLOP/s; model = %.1f%% of it\n",
                  bf16_gemm, 100 * achieved / bf16_gemm);
    if (a.profile) {
      std::printf("time per step by operation (ms, mean of the timed steps; CPU: main thread):\n");
      std::printf("  %-20s %9s %9s\n", "", "wall", "CPU");
      for (const auto& [name, ms] : profile["wall"].items())
        std::printf("  %-20s %9.1f %9s\n", name.c_str(), ms.get<double>(),
                    profile["cpu"].contains(name)
                        ? fmt::format("{:.1f}", profile["cpu"][name].get<double>()).c_str()
                        : "");
    }
  }
}

void run_bench_train(const BenchTrainArgs& a) {
  model::LlamaConfig config =
      a.config_json.empty() ? model::preset(a.preset) : model::load_config(a.config_json);
  model::RunOptions run;
  run.precision = a.precision;
  run.rope_mode = a.rope_mode.value_or(model::default_rope_mode(a.precision));
  run.threads = a.threads;
  run.bf16_compute = resolve_bf16_compute(a.bf16_compute, a.precision, a.json);
  if (a.seq_len < 2) throw CLI::ValidationError("--seq-len", "must be at least 2");
  if (a.steps < 1) throw CLI::ValidationError("--steps", "must be at least 1");
  if (a.seq_len > config.max_position_embeddings) config.max_position_embeddings = a.seq_len;

  // Checkpointing: auto turns it on when the stored activations would pass 4 GiB.
  if (a.checkpointing == "on" || a.checkpointing == "auto") run.checkpointing = true;
  if (a.checkpointing == "auto") {
    run.checkpointing = false;
    if (model::LlamaTrainModel(config, run).activation_bytes(a.seq_len) > (std::int64_t{4} << 30))
      run.checkpointing = true;
  } else if (a.checkpointing != "on" && a.checkpointing != "off") {
    throw CLI::ValidationError("--checkpointing", "expected auto, on or off");
  }
  model::LlamaTrainModel model(config, run);
  model::init_parameters(model.layout(), config, a.seed, model.params());
  // Under mpirun: every rank runs the step on its own copy of the window and the gradients are
  // summed over the ranks as the trainer sums them (data parallel); the time of that reduction
  // is reported as communication, after a barrier whose time (waiting for the slowest rank) is
  // reported apart.
  // Under mpirun with --sp S: groups of S ranks share the window, each holding a token shard,
  // and their partial gradients are summed with the others' (the error names both numbers when
  // the world is not a multiple of S).
  const std::unique_ptr<dist::Communicator> world = dist::make_world_communicator();
  // Every rank runs the steps; an error on one ends them all (never a hang in a collective).
  dist::run_or_abort(*world, [&] { bench_steps(a, config, run, model, *world); });
}
}  // namespace

void register_bench_train(CLI::App& bench) {
  auto a = std::make_shared<BenchTrainArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "train",
      "Time training steps (forward, backward, AdamW) of a model on one synthetic packed window; "
      "MFU against the sgemm rate measured in the same run");
  cmd->add_option("--preset", a->preset,
                  fmt::format("Model preset: {}", fmt::join(model::preset_names(), ", ")))
      ->capture_default_str();
  cmd->add_option("--config-json", a->config_json, "A HuggingFace config.json instead of a preset");
  cmd->add_option("--seq-len", a->seq_len, "Window length in tokens")->capture_default_str();
  add_enum_option(*cmd, "--mask", a->mask, "Attention mask");
  cmd->add_option("--docs", a->docs, "Document lengths: fixed:N, lognormal:MEDIAN:SIGMA, file:PATH")
      ->capture_default_str();
  add_enum_option(*cmd, "--precision", a->precision, "Training precision");
  cmd->add_option("--bf16-compute", a->bf16_compute, kBf16ComputeHelpWithPrecision);
  add_enum_option(*cmd, "--rope-mode", a->rope_mode,
                  "RoPE precision mode (default: fp32 with fp32, hf_bf16 with bf16)");
  cmd->add_option("--checkpointing", a->checkpointing,
                  "auto (on when activations would pass 4 GiB), on or off")
      ->capture_default_str();
  cmd->add_option("--steps", a->steps, "Timed steps (the median is reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, INT32_MAX));
  // A negative count took timed steps away (--steps 1 --warmup -5 timed none: "step nan ms").
  cmd->add_option("--warmup", a->warmup, "Untimed steps first")
      ->capture_default_str()
      ->check(CLI::Range(0, INT32_MAX));
  add_threads_option(*cmd, a->threads, kRunThreadsHelp);
  cmd->add_option("--sp", a->sp,
                  "Sequence-parallel degree (Ulysses, docs/DISTRIBUTED_SP.md): the number of "
                  "processes must be a multiple, so one process runs --sp 1")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of weights, documents and tokens")
      ->capture_default_str();
  cmd->add_flag("--profile", a->profile,
                "Also time each kind of operation (GEMMs, their bf16 conversion, attention, "
                "RMSNorm, ...) over the timed steps: profile_ms_per_step in the JSON");
  cmd->add_flag(
      "--json", a->json,
      "One JSON object: step_ms, step_cpu_ms, tokens_per_s, mfu, sgemm_gflops, peak_rss_mb, ...");
  cmd->callback([a] {
    core::set_default_threads(a->threads);
    run_bench_train(*a);
  });
}

}  // namespace anchorctx::cli
