// `anchorctx bench attention`: times the attention kernels on a random packed batch and puts
// the numbers beside what the BLAS reaches on a plain sgemm on the same machine and threads.
//
// Work counted (useful work only, as the issue defines it): 4*D flops per visible (q, k) pair
// and query head forward (two D-long dot products: q.k and p*v), 2.5 times that backward.
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/attention/block_plan.h"
#include "anchorctx/attention/kernels.h"
#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"
#include "anchorctx/core/bf16.h"
#include "anchorctx/core/blas.h"
#include "anchorctx/core/cpu_info.h"
#include "anchorctx/core/dtype.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/parallel.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/doc_lengths.h"
#include "anchorctx/model/bf16_compute.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/cpu_json.h"
#include "cli/enum_option.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

namespace attn = anchorctx::attention;

// Square size of the sgemm yardstick: large enough that OpenBLAS runs at its steady rate on a
// few cores (2 * 2048^3 = 17 GFLOP per product), small enough to take well under a second.
constexpr int kSgemmSize = 2048;
constexpr int kSgemmRepeat = 3;

struct Args {
  int seq_len = 8192;
  int batch = 1;
  int heads = 8;
  int kv_heads = 0;  // 0: same as heads
  int head_dim = 128;
  std::string mask = "anchor";
  std::string docs = "lognormal:1024:1.0";
  int anchor_len = -1;  // -1: 1 for the anchor mask, else 0
  std::uint64_t seed = 1;
  std::string dtype = "fp32";
  std::string bf16_compute;  // empty: native where attention::native_bf16_available()
  int threads = 0;           // 0: all cores
  int repeat = 5;
  double warmup_ms = core::kWarmUpMs;
  int tile = attn::BlockPlan::kDefaultTileSize;
  bool no_backward = false;
  std::string save_docs;
  bool json = false;
};

// Fills `out` with N(0, 1) samples. Blocks of fixed size get their own generator, seeded from
// (seed, tensor, block), so the values do not depend on the thread count.
void fill_normal(std::vector<float>& out, std::uint64_t seed, std::uint64_t tensor) {
  constexpr std::int64_t kBlock = 1 << 16;
  const std::int64_t n = static_cast<std::int64_t>(out.size());
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                      static_cast<std::uint32_t>(tensor), static_cast<std::uint32_t>(b)};
    std::mt19937 rng(seq);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const std::int64_t end = std::min(n, (b + 1) * kBlock);
    for (std::int64_t i = b * kBlock; i < end; ++i)
      out[static_cast<std::size_t>(i)] = dist(rng);
  }
}

// A tensor in the benchmark's dtype: float32 values, or bf16 bits rounded from them.
struct Buffer {
  core::DType dtype = core::DType::f32;
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;
  void* data() { return dtype == core::DType::f32 ? static_cast<void*>(f32.data()) : bf16.data(); }
};

// A tensor of n elements: N(0, 1) values when `random`, else zeros (outputs).
Buffer make_buffer(core::DType dtype, std::size_t n, std::uint64_t seed, std::uint64_t tensor,
                   bool random) {
  Buffer buf;
  buf.dtype = dtype;
  std::vector<float> values(n, 0.0f);
  if (random) fill_normal(values, seed, tensor);
  if (dtype == core::DType::f32) {
    buf.f32 = std::move(values);
  } else {
    buf.bf16.resize(n);
    for (std::size_t i = 0; i < n; ++i)
      buf.bf16[i] = core::float_to_bf16_bits(values[i]);
  }
  return buf;
}

void save_doc_lengths(const std::string& path, const std::vector<std::vector<std::int32_t>>& docs) {
  std::ofstream out(path);
  require(out.good(), "--save-docs '{}': cannot open it for writing", path);
  for (std::size_t b = 0; b < docs.size(); ++b) {
    if (b > 0) out << '\n';
    for (const std::int32_t n : docs[b])
      out << n << '\n';
  }
  out.flush();
  require(out.good(), "--save-docs '{}': write failed", path);
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f}G", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

void run(const Args& a) {
  const attn::MaskKind mask = *attn::parse_mask_kind(a.mask);  // CLI11 checked the name
  const core::DType dtype = *core::parse_dtype(a.dtype);
  const int kv_heads = a.kv_heads > 0 ? a.kv_heads : a.heads;
  if (a.heads % kv_heads != 0) {
    throw CLI::ValidationError("--kv-heads", fmt::format("--heads {} is not a multiple of "
                                                         "--kv-heads {}",
                                                         a.heads, kv_heads));
  }
  const std::int64_t tokens = static_cast<std::int64_t>(a.seq_len) * a.batch;
  if (tokens > std::numeric_limits<std::int32_t>::max()) {
    throw CLI::ValidationError("--seq-len", fmt::format("--seq-len {} times --batch {} exceeds "
                                                        "2^31 - 1 tokens",
                                                        a.seq_len, a.batch));
  }
  const int anchor_len = a.anchor_len >= 0 ? a.anchor_len : (mask == attn::MaskKind::anchor);
  if (anchor_len > a.seq_len) {
    throw CLI::ValidationError(
        "--anchor-len", fmt::format("--anchor-len {} exceeds --seq-len {}", anchor_len, a.seq_len));
  }
  const model::Bf16Compute bf16_compute =
      resolve_attention_bf16_compute(a.bf16_compute, dtype == core::DType::bf16);
  const int threads = core::resolve_threads(a.threads);
  const bool progress = !a.json && isatty(STDERR_FILENO) != 0;
  const auto note = [&](const std::string& what) {
    if (progress) fmt::print(stderr, "bench attention: {}\n", what);
  };

  // Layout: [anchor] doc1 doc2 ... per sequence, the anchor its own document.
  const data::DocLengthSpec spec = data::parse_doc_length_spec(a.docs);
  const auto doc_lengths = data::generate_doc_lengths(spec, a.batch, a.seq_len, a.seed, anchor_len);
  if (!a.save_docs.empty()) save_doc_lengths(a.save_docs, doc_lengths);
  const attn::AttentionLayout layout =
      attn::AttentionLayout::from_document_lengths(doc_lengths, anchor_len);
  std::int64_t num_docs = 0;
  for (const auto& d : doc_lengths)
    num_docs += static_cast<std::int64_t>(d.size());

  core::Stopwatch plan_watch;
  const attn::BlockPlan plan = attn::BlockPlan::build(layout, mask, a.tile);
  const double plan_ms = plan_watch.elapsed_ms();
  std::int64_t causal_tile_pairs = 0;  // what a causal plan visits: the yardstick for skipping
  for (int b = 0; b < layout.num_sequences(); ++b) {
    const std::int64_t n = plan.first_q_tile(b + 1) - plan.first_q_tile(b);
    causal_tile_pairs += n * (n + 1) / 2;
  }

  const std::int64_t visible = layout.visible_pairs(mask);
  const std::int64_t causal = layout.visible_pairs(attn::MaskKind::causal);
  const double visible_fraction =
      causal > 0 ? static_cast<double>(visible) / static_cast<double>(causal) : 0.0;
  const double fwd_flops = 4.0 * a.head_dim * static_cast<double>(visible) * a.heads;
  const double bwd_flops = 2.5 * fwd_flops;

  note(fmt::format("generating {} x {} tokens of random q, k, v, dout ({})", a.batch, a.seq_len,
                   a.dtype));
  const std::size_t t = static_cast<std::size_t>(tokens);
  const std::size_t nq = t * static_cast<std::size_t>(a.heads) * a.head_dim;
  const std::size_t nkv = t * static_cast<std::size_t>(kv_heads) * a.head_dim;
  Buffer q = make_buffer(dtype, nq, a.seed, 1, true);
  Buffer k = make_buffer(dtype, nkv, a.seed, 2, true);
  Buffer v = make_buffer(dtype, nkv, a.seed, 3, true);
  Buffer out = make_buffer(dtype, nq, a.seed, 0, false);
  std::vector<float> lse(t * static_cast<std::size_t>(a.heads));

  const attn::AttentionDims dims{a.heads, kv_heads, a.head_dim};
  attn::KernelOptions options;
  options.threads = threads;
  options.native_bf16 = bf16_compute == model::Bf16Compute::native;
  const attn::ForwardTensors fwd{dtype, q.data(), k.data(), v.data(), out.data(), lse.data()};

  note(fmt::format("forward: warm-up + {} runs", a.repeat));
  core::warm_up(a.warmup_ms, [&] { attn::forward(plan, dims, fwd, options); });
  const std::vector<double> fwd_runs =
      core::time_runs_ms(a.repeat, [&] { attn::forward(plan, dims, fwd, options); });

  std::vector<double> bwd_runs;
  if (!a.no_backward) {
    Buffer dout = make_buffer(dtype, nq, a.seed, 4, true);
    Buffer dq = make_buffer(dtype, nq, a.seed, 0, false);
    Buffer dk = make_buffer(dtype, nkv, a.seed, 0, false);
    Buffer dv = make_buffer(dtype, nkv, a.seed, 0, false);
    const attn::BackwardTensors bwd{dtype,       q.data(),   k.data(),  v.data(),  out.data(),
                                    dout.data(), lse.data(), dq.data(), dk.data(), dv.data()};
    note(fmt::format("backward: warm-up + {} runs", a.repeat));
    core::warm_up(a.warmup_ms, [&] { attn::backward(plan, dims, bwd, options); });
    bwd_runs = core::time_runs_ms(a.repeat, [&] { attn::backward(plan, dims, bwd, options); });
  }

  // Last, so that OpenBLAS's spinning worker threads never compete with the kernels' timing.
  note(fmt::format("sgemm yardstick: {}^3, {} threads", kSgemmSize, threads));
  const double sgemm = core::measure_sgemm_gflops(kSgemmSize, threads, kSgemmRepeat, a.warmup_ms);
  // The bf16 yardstick through oneDNN (0 where the native bf16 path is unavailable).
  const double bf16_gemm =
      model::measure_bf16_gemm_gflops(kSgemmSize, threads, kSgemmRepeat, a.warmup_ms);

  const double fwd_ms = core::median(fwd_runs);
  const double fwd_gflops = fwd_flops / (fwd_ms * 1e-3) * 1e-9;
  const double bwd_ms = a.no_backward ? std::nan("") : core::median(bwd_runs);
  const double bwd_gflops = a.no_backward ? std::nan("") : bwd_flops / (bwd_ms * 1e-3) * 1e-9;
  const std::string isa = attn::kernel_isa(dtype, options);
  const attn::BackwardSchedule backward_schedule = attn::backward_schedule(plan, dims, threads);

  std::string table;
  table += fmt::format("anchorctx bench attention ({} kernels, {} threads, anchorctx {})\n", isa,
                       threads, kVersion);
  table += fmt::format("  cpu       {}\n", core::describe(core::cpu_info()));
  table += fmt::format(
      "  shape     batch {} x seq_len {} = {} tokens; heads {} (kv {}), "
      "head_dim {}, {}\n",
      a.batch, a.seq_len, tokens, a.heads, kv_heads, a.head_dim, a.dtype);
  table += fmt::format("  layout    mask {}, docs {}: {} documents, anchor_len {}, seed {}\n",
                       a.mask, a.docs, num_docs, anchor_len, a.seed);
  table += fmt::format("  visible   {:.2f}% of causal pairs ({} of {})\n", 100.0 * visible_fraction,
                       human_count(static_cast<double>(visible)),
                       human_count(static_cast<double>(causal)));
  table += fmt::format(
      "  plan      tile {}: {} of {} causal tile pairs visited ({} partial), "
      "built in {:.2f} ms\n",
      a.tile, plan.visited_pairs(), causal_tile_pairs, plan.partial_pairs(), plan_ms);
  table += fmt::format("\n  {:<10} {:>12} {:>10} {:>9}\n", "", "median ms", "GFLOP/s", "% sgemm");
  table += fmt::format("  {:<10} {:>12.2f} {:>10.1f} {:>8.1f}%\n", "forward", fwd_ms, fwd_gflops,
                       100.0 * fwd_gflops / sgemm);
  if (!a.no_backward) {
    table +=
        fmt::format("  {:<10} {:>12.2f} {:>10.1f} {:>8.1f}%   (schedule {})\n", "backward", bwd_ms,
                    bwd_gflops, 100.0 * bwd_gflops / sgemm, attn::to_string(backward_schedule));
  }
  table += fmt::format("  {:<10} {:>12} {:>10.1f} {:>8}   ({}^3 float32, {} runs)\n", "sgemm", "",
                       sgemm, "100.0%", kSgemmSize, kSgemmRepeat);
  if (bf16_gemm > 0.0) {
    // The yardstick of the native bf16 kernels: what oneDNN reaches on the bf16 units.
    const auto pct = [&](double gflops) { return 100.0 * gflops / bf16_gemm; };
    table += fmt::format(
        "  {:<10} {:>12} {:>10.1f} {:>8.1f}%   ({}^3 bf16 -> float32, {} runs; "
        "forward {:.1f}%, backward {:.1f}% of it)\n",
        "bf16 gemm", "", bf16_gemm, 100.0 * bf16_gemm / sgemm, kSgemmSize, kSgemmRepeat,
        pct(fwd_gflops), a.no_backward ? 0.0 : pct(bwd_gflops));
  }

  // OpenBLAS reads OPENBLAS_CORETYPE once, at load; a forced core type (e.g. Haswell on an
  // AVX-512 machine) changes the yardstick by up to 2x, so the output says so.
  const char* coretype_env = std::getenv("OPENBLAS_CORETYPE");
  const std::string coretype = coretype_env != nullptr ? coretype_env : "";
  if (!coretype.empty()) {
    table += fmt::format(
        "  note: OPENBLAS_CORETYPE={} is set: the sgemm yardstick uses that core's "
        "kernels ({})\n",
        coretype, core::blas_name());
  }

  if (!a.json) {
    fmt::print(stdout, "{}", table);
    std::fflush(stdout);
    return;
  }
  fmt::print(stderr, "{}", table);

  // NaN is not JSON: a skipped backward reports null.
  const auto number_or_null = [](double x) {
    return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
  };
  nlohmann::json j;
  j["command"] = "bench attention";
  j["version"] = kVersion;
  j["fwd_ms"] = fwd_ms;
  j["bwd_ms"] = number_or_null(bwd_ms);
  j["fwd_gflops"] = fwd_gflops;
  j["bwd_gflops"] = number_or_null(bwd_gflops);
  j["fwd_runs_ms"] = fwd_runs;
  j["bwd_runs_ms"] = bwd_runs;
  j["fwd_pct_sgemm"] = 100.0 * fwd_gflops / sgemm;
  j["bwd_pct_sgemm"] = number_or_null(100.0 * bwd_gflops / sgemm);
  j["fwd_flops"] = fwd_flops;
  j["bwd_flops"] = bwd_flops;
  j["visible_fraction"] = visible_fraction;
  j["visible_pairs"] = visible;
  j["causal_pairs"] = causal;
  j["sgemm_gflops"] = sgemm;
  j["sgemm_n"] = kSgemmSize;
  j["bf16_gemm_gflops"] = bf16_gemm;
  j["fwd_pct_bf16_gemm"] =
      bf16_gemm > 0.0 ? nlohmann::json(100.0 * fwd_gflops / bf16_gemm) : nlohmann::json(nullptr);
  j["bwd_pct_bf16_gemm"] =
      number_or_null(bf16_gemm > 0.0 ? 100.0 * bwd_gflops / bf16_gemm : std::nan(""));
  j["blas"] = core::blas_name();
  j["cpu"] = cpu_json(core::cpu_info());
  j["openblas_coretype"] = coretype.empty() ? nlohmann::json(nullptr) : nlohmann::json(coretype);
  j["isa"] = isa;
  // How bf16 tensors were multiplied (null for fp32, where it means nothing).
  j["bf16_compute"] = dtype == core::DType::bf16
                          ? nlohmann::json(std::string(model::to_string(bf16_compute)))
                          : nlohmann::json(nullptr);
  j["threads"] = threads;
  j["backward_schedule"] = a.no_backward
                               ? nlohmann::json(nullptr)
                               : nlohmann::json(std::string(attn::to_string(backward_schedule)));
  j["tokens"] = tokens;
  j["num_documents"] = num_docs;
  j["plan"] = {{"tile_size", plan.tile_size()},
               {"num_tiles", plan.num_q_tiles()},
               {"visited_pairs", plan.visited_pairs()},
               {"partial_pairs", plan.partial_pairs()},
               {"full_pairs", plan.visited_pairs() - plan.partial_pairs()},
               {"causal_tile_pairs", causal_tile_pairs},
               {"build_ms", plan_ms}};
  // The arguments, as run (defaults resolved).
  j["seq_len"] = a.seq_len;
  j["batch"] = a.batch;
  j["heads"] = a.heads;
  j["kv_heads"] = kv_heads;
  j["head_dim"] = a.head_dim;
  j["mask"] = a.mask;
  j["docs"] = a.docs;
  j["anchor_len"] = anchor_len;
  j["seed"] = a.seed;
  j["dtype"] = a.dtype;
  j["repeat"] = a.repeat;
  j["warmup_ms"] = a.warmup_ms;
  j["tile"] = a.tile;
  j["backward"] = !a.no_backward;
  j["save_docs"] = a.save_docs.empty() ? nlohmann::json(nullptr) : nlohmann::json(a.save_docs);
  fmt::print(stdout, "{}\n", j.dump());
  std::fflush(stdout);
}

}  // namespace

void register_bench_attention(CLI::App& bench) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = bench.add_subcommand(
      "attention", "Time the attention kernels (forward and backward) on a random packed batch");
  // The last of a repeated option wins, so scripts can append overrides to a base command.
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--seq-len", args->seq_len, "Tokens per sequence")
      ->capture_default_str()
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--batch", args->batch, "Sequences in the batch")
      ->capture_default_str()
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--heads", args->heads, "Query heads")
      ->capture_default_str()
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--kv-heads", args->kv_heads, "Key/value heads (default: --heads)")
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--head-dim", args->head_dim, "Head dimension (a multiple of 8, at most 256)")
      ->capture_default_str()
      ->check(CLI::Range(8, 256));
  cmd->add_option("--mask", args->mask, "Attention mask")
      ->capture_default_str()
      ->check(enum_check<attn::MaskKind>());
  cmd->add_option("--docs", args->docs,
                  "Document lengths: fixed:N, lognormal:MEDIAN:SIGMA or file:PATH")
      ->capture_default_str();
  cmd->add_option("--anchor-len", args->anchor_len,
                  "Anchor tokens at the start of each sequence, their own document "
                  "(default: 1 for --mask anchor, else 0)")
      ->check(CLI::Range(0, INT32_MAX));
  cmd->add_option("--seed", args->seed, "Seed of the layout and the tensors")
      ->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "Tensor type")
      ->capture_default_str()
      ->check(enum_check<core::DType>());
  cmd->add_option("--bf16-compute", args->bf16_compute, kAttentionBf16ComputeHelp)
      ->check(enum_check<model::Bf16Compute>());
  add_threads_option(*cmd, args->threads, "Threads (0: all cores)");
  cmd->add_option("--repeat", args->repeat, "Timed runs of each pass (the median is reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, INT32_MAX));
  cmd->add_option("--warmup-ms", args->warmup_ms,
                  "Untimed runs before each timed pass (and yardstick) for at least this long, and "
                  "at least one: the first 100-150 ms of two-thread work after the single-threaded "
                  "setup ran up to 1.5x slower on a 2-vCPU VM")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--tile", args->tile, "Tile size of the block plan")
      ->capture_default_str()
      ->check(CLI::Range(1, attention::BlockPlan::kMaxTileSize));
  cmd->add_flag("--no-backward", args->no_backward, "Time the forward pass only");
  cmd->add_option("--save-docs", args->save_docs,
                  "Write the document lengths, one per line, a blank line between sequences (the "
                  "anchor's own one-token document among them, for tools/peers: --docs file: "
                  "under --mask anchor adds another)");
  cmd->add_flag("--json", args->json, "Print one JSON object on stdout");
  cmd->callback([args] {
    core::set_default_threads(args->threads);
    run(*args);
  });
}

}  // namespace anchorctx::cli
