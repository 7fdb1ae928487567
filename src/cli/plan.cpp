// `anchorctx plan`: the cost model (train/cost_model.h) of a distributed training step for a
// model, a window and G ranks split into S-way Ulysses groups: FLOPs, memory, bytes on the wire
// and time per rank, what the mask saves against full attention, and the limits met.
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/doc_lengths.h"
#include "anchorctx/model/config.h"
#include "anchorctx/train/batch.h"
#include "anchorctx/train/cost_model.h"
#include "anchorctx/train/hardware.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {

namespace {

struct PlanArgs {
  std::string preset, model_config, dataset, hardware = "a100-nvlink";
  std::string docs = "lognormal:1024:1.0", checkpointing = "auto";
  std::int64_t seq_len = 0;
  int gpus = 1, sp = 1, grad_accum = 1, windows = 8, threads = 0;
  bool shard_optimizer = false, json = false;
  attention::MaskKind mask = attention::MaskKind::anchor;
  std::string bf16_compute;  // "": train's default
  model::Precision precision = model::Precision::bf16;
  std::optional<model::Precision> comm_precision;  // default: the training precision
  std::int64_t loss_chunk = 1024;
  std::uint64_t seed = 0;
  double gemm_efficiency = 0.0, attention_efficiency = 0.0;  // 0: the profile's
};

constexpr attention::MaskKind kMasks[] = {
    attention::MaskKind::causal, attention::MaskKind::intra_doc, attention::MaskKind::anchor};

// The sampled windows: the first `count` windows of a packed dataset (its documents and anchor
// as training batches them), or `count` windows drawn by the --docs spec.
attention::AttentionLayout windows_of(const PlanArgs& a, std::int64_t seq_len) {
  if (!a.dataset.empty()) {
    const data::Dataset ds = data::Dataset::open(a.dataset);
    std::vector<std::uint64_t> ids;
    for (std::uint64_t i = 0;
         i < ds.num_windows() && ids.size() < static_cast<std::size_t>(a.windows); ++i)
      ids.push_back(i);
    require(!ids.empty(), "{}: the dataset holds no window", a.dataset);
    train::BatchOptions options;
    options.mask = attention::MaskKind::anchor;
    return train::make_batch(ds, ids, options).plan.layout();
  }
  return train::sample_windows(data::parse_doc_length_spec(a.docs), a.windows,
                               static_cast<std::int32_t>(seq_len), a.seed);
}

double gib(std::int64_t bytes) {
  return static_cast<double>(bytes) / (1 << 30);
}

nlohmann::json work_json(const train::AttentionWork& w) {
  return {
      {"visible_pairs", w.visible_pairs}, {"computed_pairs", w.computed_pairs},
      {"causal_pairs", w.causal_pairs},   {"visible_fraction", w.visible_pairs / w.causal_pairs},
      {"visited_tiles", w.visited_tiles}, {"partial_tiles", w.partial_tiles}};
}

nlohmann::json estimate_json(const train::PlanEstimate& e) {
  const auto& f = e.flops;
  const auto& m = e.memory;
  const auto& c = e.communication;
  const auto& t = e.time;
  return {{"tokens_per_rank", e.tokens_per_rank},
          {"flops_per_rank",
           {{"matmul", f.matmul},
            {"attention", f.attention},
            {"attention_computed", f.attention_computed},
            {"recompute", f.recompute},
            {"model", f.model()},
            {"executed", f.executed()}}},
          {"memory_per_rank_bytes",
           {{"parameters", m.parameters},
            {"gradients", m.gradients},
            {"optimizer", m.optimizer},
            {"step_buffers", m.step_buffers},
            {"weight_copy", m.weight_copy},
            {"ulysses_staging", m.ulysses_staging},
            {"total", m.total()},
            {"total_bf16_activations", m.total_bf16_activations()}}},
          {"communication_per_rank_bytes",
           {{"a2a_forward_per_layer", c.a2a_forward_per_layer},
            {"a2a_backward_per_layer", c.a2a_backward_per_layer},
            {"a2a_step", c.a2a_step},
            {"kv_replication", c.kv_replication},
            {"gradient_ranks", c.gradient_ranks},
            {"gradient_all_reduce", c.gradient_all_reduce},
            {"zero_reduce_scatter", c.zero_reduce_scatter},
            {"zero_all_gather", c.zero_all_gather}}},
          {"time_s",
           {{"matmul", t.matmul},
            {"attention", t.attention},
            {"recompute", t.recompute},
            {"all_to_all", t.all_to_all},
            {"gradients", t.gradients},
            {"optimizer", t.optimizer},
            {"step", t.total()}}},
          {"tokens_per_s", e.tokens_per_second},
          {"mfu", e.mfu},
          {"fits", e.fits},
          {"notes", e.notes}};
}

void print_table(const PlanArgs& a, const train::PlanSetup& s, const train::HardwareProfile& hw,
                 const train::PlanEstimate& e, const std::vector<train::PlanEstimate>& by_mask,
                 const std::vector<train::AttentionWork>& works) {
  const auto& c = s.config;
  std::string out;
  const auto line = [&out](const std::string& text) { out += text + "\n"; };
  line(
      fmt::format("model      {}: {:.2f}B parameters, {} layers, hidden {}, {} heads / {} kv heads "
                  "x {}, vocab {}",
                  a.model_config.empty() ? a.preset : a.model_config, e.parameters / 1e9,
                  c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads,
                  c.resolved_head_dim(), c.vocab_size));
  line(
      fmt::format("setup      T = {}, G = {} ranks = DP {} x SP {}, {} window(s) per group and "
                  "step ({} tokens per step), mask {}, {}{}{}",
                  s.seq_len, s.gpus, s.dp(), s.sp, s.grad_accum,
                  static_cast<std::int64_t>(s.dp()) * s.grad_accum * s.seq_len,
                  attention::to_string(a.mask), model::to_string(s.precision),
                  s.shard_optimizer ? ", ZeRO-1" : "", s.checkpointing ? ", checkpointing" : ""));
  line(
      fmt::format("limits     Ulysses S <= {} (whole heads per rank); kv heads {}: S must divide "
                  "them or be a multiple of them",
                  c.num_attention_heads, c.num_key_value_heads));
  line(fmt::format("hardware   {}: {}", hw.name, hw.description));
  line(fmt::format("           {}", hw.source));
  line(fmt::format("documents  {} ({} window(s) sampled, tiles of {})",
                   a.dataset.empty() ? a.docs : "dataset " + a.dataset, works[0].windows,
                   works[0].tile_size));
  line("");
  line("per rank and optimizer step");
  line(
      fmt::format("  FLOPs      matmul {:.3g} T, attention {:.3g} T useful / {:.3g} T in visited "
                  "tiles, recompute {:.3g} T",
                  e.flops.matmul / 1e12, e.flops.attention / 1e12,
                  e.flops.attention_computed / 1e12, e.flops.recompute / 1e12));
  const auto& m = e.memory;
  line(
      fmt::format("  memory     {:.2f} GiB = parameters {:.2f} + gradients {:.2f} + AdamW {:.2f} "
                  "+ step buffers {:.2f} (bf16 weight copy {:.2f}) + all-to-all staging {:.2f}; "
                  "device {:.1f} GiB: {}",
                  gib(m.total()), gib(m.parameters), gib(m.gradients), gib(m.optimizer),
                  gib(m.step_buffers), gib(m.weight_copy), gib(m.ulysses_staging),
                  gib(hw.memory_bytes), e.fits ? "fits" : "DOES NOT FIT"));
  line(fmt::format("             with activations stored in bf16 (a GPU framework): {:.2f} GiB",
                   gib(m.total_bf16_activations())));
  const auto& k = e.communication;
  line(
      fmt::format("  all-to-all {:.3g} MB per layer forward, {:.3g} MB backward, {:.3g} GB per "
                  "step (kv replication x{}, {})",
                  k.a2a_forward_per_layer / 1e6, k.a2a_backward_per_layer / 1e6, k.a2a_step / 1e9,
                  k.kv_replication, model::to_string(s.comm_precision)));
  if (s.shard_optimizer)
    line(
        fmt::format("  gradients  ZeRO-1 over {} ranks: reduce-scatter {:.3g} GB + all-gather "
                    "{:.3g} GB",
                    k.gradient_ranks, k.zero_reduce_scatter / 1e9, k.zero_all_gather / 1e9));
  else
    line(fmt::format("  gradients  ring all-reduce over {} ranks: {:.3g} GB sent", k.gradient_ranks,
                     k.gradient_all_reduce / 1e9));
  const auto& t = e.time;
  line(fmt::format(
      "  time       {:.3f} s = matmul {:.3f} + attention {:.3f} + recompute {:.3f} + "
      "all-to-all {:.3f} + gradients {:.3f} + AdamW {:.3f}",
      t.total(), t.matmul, t.attention, t.recompute, t.all_to_all, t.gradients, t.optimizer));
  line(fmt::format("  throughput {:.0f} tokens/s for the run, MFU {:.1f}%", e.tokens_per_second,
                   100 * e.mfu));
  line("");
  line("mask        visible   attention TFLOP/rank   step s   step / causal");
  for (std::size_t i = 0; i < by_mask.size(); ++i)
    line(fmt::format(
        "{:<10}  {:7.4f}   {:20.3f}   {:6.3f}   {:13.3f}", attention::to_string(kMasks[i]),
        works[i].visible_pairs / works[i].causal_pairs, by_mask[i].flops.attention / 1e12,
        by_mask[i].time.total(), by_mask[i].time.total() / by_mask[0].time.total()));
  if (!e.notes.empty()) {
    line("");
    for (const std::string& note : e.notes)
      line("note: " + note);
  }
  std::fputs(out.c_str(), stdout);
}

void run_plan(const PlanArgs& a) {
  if (a.preset.empty() == a.model_config.empty())
    throw CLI::ValidationError("--preset", "give exactly one of --preset and --model-config");
  if (a.windows < 1) throw CLI::ValidationError("--windows", "must be at least 1");
  // As train refuses it: the memory estimate divides the LM head's logits by it.
  if (a.loss_chunk < 1) throw CLI::ValidationError("--loss-chunk", "must be at least 1");
  train::PlanSetup s;
  s.config = a.model_config.empty() ? model::preset(a.preset) : model::load_config(a.model_config);
  s.gpus = a.gpus;
  s.sp = a.sp;
  s.grad_accum = a.grad_accum;
  s.shard_optimizer = a.shard_optimizer;
  s.precision = a.precision;
  s.comm_precision = a.comm_precision.value_or(a.precision);
  s.loss_chunk = a.loss_chunk;
  s.seq_len = a.seq_len;
  if (!a.dataset.empty()) {
    const std::int64_t ds_len = data::Dataset::open(a.dataset).seq_len();
    if (a.seq_len != 0 && a.seq_len != ds_len)
      fail("--seq-len {} differs from the dataset's windows of {} tokens ({})", a.seq_len, ds_len,
           a.dataset);
    s.seq_len = ds_len;
  }
  if (s.seq_len < 1) throw CLI::ValidationError("--seq-len", "required (a positive length)");
  if (a.checkpointing != "auto" && a.checkpointing != "on" && a.checkpointing != "off")
    throw CLI::ValidationError("--checkpointing", "expected auto, on or off");
  s.checkpointing = a.checkpointing == "on";
  train::check_setup(s);  // before the hardware measurement and the plans
  const model::Bf16Compute bf16_compute =
      resolve_bf16_compute(a.bf16_compute, s.precision, /*quiet=*/true);
  // The bf16 GEMM yardstick only where it is the peak used (it takes half a second).
  train::HardwareProfile hw = train::hardware_profile(
      a.hardware, a.threads,
      s.precision == model::Precision::bf16 ? bf16_compute : model::Bf16Compute::emulated);
  for (auto [value, option, field] :
       {std::tuple{a.gemm_efficiency, "--gemm-efficiency", &hw.gemm_efficiency},
        std::tuple{a.attention_efficiency, "--attention-efficiency", &hw.attention_efficiency}}) {
    // Written so that NaN fails too (it compares false with both bounds).
    if (!(value >= 0 && value <= 1))
      throw CLI::ValidationError(option, fmt::format("{} does not lie in (0, 1]", value));
    if (value > 0) {
      *field = value;
      hw.source += fmt::format("; {} {} given", option, value);
    }
  }

  const attention::AttentionLayout windows = windows_of(a, s.seq_len);
  std::vector<train::AttentionWork> works;
  for (attention::MaskKind kind : kMasks)
    works.push_back(train::attention_work(windows, kind, hw.attention_tile));
  const auto work_of = [&](attention::MaskKind kind) {
    for (std::size_t i = 0; i < std::size(kMasks); ++i)
      if (kMasks[i] == kind) return works[i];
    return works[0];
  };
  // auto: checkpointing when the step without it does not fit the device.
  if (a.checkpointing == "auto")
    s.checkpointing = !train::estimate_plan(s, work_of(a.mask), hw).fits;
  const train::PlanEstimate e = train::estimate_plan(s, work_of(a.mask), hw);
  std::vector<train::PlanEstimate> by_mask;
  for (const train::AttentionWork& w : works)
    by_mask.push_back(train::estimate_plan(s, w, hw));

  if (!a.json) {
    print_table(a, s, hw, e, by_mask, works);
    return;
  }
  const model::LlamaConfig& c = s.config;
  nlohmann::json masks = nlohmann::json::object();
  for (std::size_t i = 0; i < works.size(); ++i) {
    nlohmann::json w = work_json(works[i]);
    w["attention_flops_per_rank"] = by_mask[i].flops.attention;
    w["step_s"] = by_mask[i].time.total();
    w["step_vs_causal"] = by_mask[i].time.total() / by_mask[0].time.total();
    masks[std::string(attention::to_string(kMasks[i]))] = w;
  }
  nlohmann::json j = {
      {"model",
       {{"name", a.model_config.empty() ? a.preset : a.model_config},
        {"parameters", model::parameter_count(c)},
        {"layers", c.num_hidden_layers},
        {"hidden", c.hidden_size},
        {"intermediate", c.intermediate_size},
        {"heads", c.num_attention_heads},
        {"kv_heads", c.num_key_value_heads},
        {"head_dim", c.resolved_head_dim()},
        {"vocab", c.vocab_size},
        {"max_sp", c.num_attention_heads}}},  // Ulysses: whole heads per rank
      {"setup",
       {{"seq_len", s.seq_len},
        {"gpus", s.gpus},
        {"sp", s.sp},
        {"dp", s.dp()},
        {"grad_accum", s.grad_accum},
        {"tokens_per_step", static_cast<std::int64_t>(s.dp()) * s.grad_accum * s.seq_len},
        {"mask", attention::to_string(a.mask)},
        {"docs", a.dataset.empty() ? a.docs : ""},
        {"dataset", a.dataset},
        {"windows_sampled", works[0].windows},
        {"precision", model::to_string(s.precision)},
        {"comm_precision", model::to_string(s.comm_precision)},
        {"bf16_compute", std::string(model::to_string(bf16_compute))},
        {"shard_optimizer", s.shard_optimizer},
        {"checkpointing", s.checkpointing}}},
      {"hardware",
       {{"name", hw.name},
        {"description", hw.description},
        {"peak_tflops", hw.peak_tflops(s.precision)},
        {"gemm_efficiency", hw.gemm_efficiency},
        {"attention_efficiency", hw.attention_efficiency},
        {"memory_bytes", hw.memory_bytes},
        {"memory_gbs", hw.memory_gbs},
        {"devices_per_node", hw.devices_per_node},
        {"intra_node_gbs", hw.intra_node_gbs},
        {"inter_node_gbs", hw.inter_node_gbs},
        {"attention_tile", hw.attention_tile},
        {"source", hw.source}}},
      {"estimate", estimate_json(e)},
      {"masks", masks},
  };
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void register_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Predict a distributed training step (data parallel, Ulysses sequence parallel, ZeRO-1): "
      "FLOPs, memory, communication and time per rank, from a cost model; nothing is trained");
  cmd->add_option("--preset", a->preset,
                  fmt::format("Model preset: {}", fmt::join(model::preset_names(), ", ")));
  cmd->add_option("--model-config", a->model_config, "A HuggingFace config.json instead");
  cmd->add_option("--seq-len", a->seq_len,
                  "Window length T in tokens (required unless --dataset gives it)");
  cmd->add_option("--gpus", a->gpus, "Ranks in all (G)")->capture_default_str();
  cmd->add_option("--sp", a->sp, "Ulysses sequence-parallel degree S (data parallel = G / S)")
      ->capture_default_str();
  cmd->add_option("--grad-accum", a->grad_accum, "Windows per sequence-parallel group and step")
      ->capture_default_str();
  cmd->add_flag("--shard-optimizer", a->shard_optimizer,
                "ZeRO-1: AdamW moments sharded over the G ranks, gradients reduce-scattered and "
                "parameters all-gathered");
  cmd->add_option("--checkpointing", a->checkpointing,
                  "auto (on when the step would not fit the device), on or off")
      ->capture_default_str();
  add_enum_option(*cmd, "--mask", a->mask, "Attention mask of the planned run");
  cmd->add_option("--docs,--doc-lengths", a->docs,
                  "Document lengths of the sampled windows: fixed:N, lognormal:MEDIAN:SIGMA, "
                  "file:PATH (an anchor token opens each window)")
      ->capture_default_str();
  cmd->add_option("--dataset", a->dataset,
                  "A packed dataset folder: its first --windows windows instead of --docs");
  cmd->add_option("--windows", a->windows, "Windows sampled for the attention work")
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of the sampled documents")->capture_default_str();
  cmd->add_option("--hardware", a->hardware,
                  "Hardware profile: a100-nvlink, h100-nvlink, h200-nvlink (8 per node, "
                  "InfiniBand between nodes), or cpu-local (this machine, measured now)")
      ->capture_default_str();
  cmd->add_option("--gemm-efficiency", a->gemm_efficiency,
                  "Fraction of peak the GEMMs reach, instead of the profile's (0: the profile's)")
      ->capture_default_str();
  cmd->add_option("--attention-efficiency", a->attention_efficiency,
                  "Fraction of peak the attention kernels reach, instead of the profile's")
      ->capture_default_str();
  add_threads_option(*cmd, a->threads, "cpu-local: threads of the measurement (0: all)");
  add_enum_option(*cmd, "--precision", a->precision, "Training precision (the GEMM peak)");
  cmd->add_option("--bf16-compute", a->bf16_compute,
                  "cpu-local with --precision bf16: the GEMMs as train will run them, native "
                  "(the bf16 peak is oneDNN's bf16 GEMM measured now) or emulated (the sgemm "
                  "rate). Default: train's default here (native where oneDNN is built in and the "
                  "CPU has AVX512_BF16)");
  add_enum_option(*cmd, "--comm-precision", a->comm_precision,
                  "Element size on the wire (default: the training precision; this project's "
                  "MPI backend sends fp32)");
  cmd->add_option("--loss-chunk", a->loss_chunk, "Tokens per LM-head chunk (as train)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json,
                "One JSON object: model, setup, hardware, estimate (flops_per_rank, "
                "memory_per_rank_bytes, communication_per_rank_bytes, time_s, ...), masks");
  cmd->callback([a] { run_plan(*a); });
}

}  // namespace anchorctx::cli
