// `anchorctx demo`: the embedded default job. With no input it generates the built-in corpus,
// packs it with the byte tokenizer, trains the `tiny` model with AnchorAttention in bf16 for
// about two minutes on two AVX-512 cores (seven on AVX2-only ones), times a few steps of full
// attention on the same model for comparison, and leaves a model folder and a short report.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/folder_lock.h"
#include "anchorctx/core/interrupt.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/dataset.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/model/generation.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/train/trainer.h"
#include "cli/bf16_compute_option.h"
#include "cli/commands.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {

namespace {

namespace fs = std::filesystem;
constexpr const char* kMarker = ".anchorctx-demo";

struct DemoArgs {
  std::string out = "anchorctx-demo";
  std::int64_t steps = 500;
  std::int64_t documents = 6000;
  std::int32_t seq_len = 2048;
  std::int64_t batch_windows = 2;
  int timing_steps = 3;
  int threads = 0;
  std::uint64_t seed = 1234;
  std::string bf16_compute;  // empty: model::default_bf16_compute()
  bool json = false, quiet = false;
};

void say(const DemoArgs& a, const std::string& line) {
  if (!a.quiet) std::fprintf(stderr, "%s\n", line.c_str());
}

constexpr const char* kMarkerHeader = "made by anchorctx demo; rerunning the demo replaces it\n";

// The files under `out` (paths relative to it, '/'-separated), each of them a regular file;
// anything else (a symbolic link, a special file) is named in the error.
std::vector<std::string> files_under(const fs::path& out) {
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(out), end; it != end; ++it) {
    if (it->is_symlink() || (!it->is_directory() && !it->is_regular_file()))
      fail(
          "demo: --out '{}' holds '{}', not a regular file or folder; a demo writes none: "
          "choose another path or remove it yourself",
          out.string(), it->path().lexically_relative(out).generic_string());
    if (it->is_regular_file()) files.push_back(it->path().lexically_relative(out).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Recorded in the marker at the demo's end: every file it wrote, so that a rerun removes
// nothing else (a user's notes saved in model/ or run/ were deleted with the folders).
void write_manifest(const fs::path& out) {
  std::string text = kMarkerHeader;
  for (const std::string& f : files_under(out))
    if (f != kMarker && f != core::FolderLock::kFileName) text += "file " + f + "\n";
  core::write_file_atomic(out / kMarker, text);
}

// The folder of a previous demo is emptied and reused, when it holds only what that demo wrote
// (the files its marker lists; a demo stopped before its end left no list: then only the names
// a demo writes at the top, core/owned_folder.h); any other existing path is left alone. The
// folder's lock is taken first and held by the caller for the demo's life, so a second demo on
// the same --out is refused instead of deleting the first one's files; the lock file itself is
// kept (see folder_lock.h).
core::FolderLock prepare_out(const fs::path& out) {
  std::error_code ec;
  const bool existed = fs::exists(fs::symlink_status(out, ec));
  if (existed) {
    if (!fs::exists(out / kMarker))
      fail("demo: --out '{}' exists and was not made by anchorctx demo; choose another path",
           out.string());
    const core::OwnedFolderRule rule{"demo folder",
                                     {kMarker},
                                     {"corpus.jsonl", "report.md", core::FolderLock::kFileName},
                                     {"data", "run", "model"},
                                     {},
                                     "demo --out"};
    core::check_replaceable_folder(out, rule, {});
    std::ifstream marker(out / kMarker);
    std::set<std::string> written;
    for (std::string line; std::getline(marker, line);)
      if (line.starts_with("file ")) written.insert(line.substr(5));
    if (!written.empty()) {
      for (const std::string& f : files_under(out))
        if (f != kMarker && f != core::FolderLock::kFileName && !written.contains(f))
          fail(
              "demo --out: refusing to replace '{}': it holds '{}', which the demo did not "
              "write; move it out, or choose another --out",
              out.string(), f);
    }
  }
  core::FolderLock lock = core::FolderLock::acquire(out, "demo folder");
  if (existed) {
    for (const fs::directory_entry& entry : fs::directory_iterator(out))
      if (entry.path().filename() != core::FolderLock::kFileName) fs::remove_all(entry.path());
  }
  core::write_file_atomic(out / kMarker, kMarkerHeader);
  return lock;
}

// Median step time (forward + backward) of `model` on the first windows of `dataset` under
// `mask`; the model's weights are left as they were (no optimizer step).
double time_steps(model::LlamaTrainModel& model, const data::Dataset& dataset,
                  attention::MaskKind mask, std::int64_t windows, int steps) {
  std::vector<std::uint64_t> ids;
  for (std::int64_t w = 0; w < windows; ++w)
    ids.push_back(static_cast<std::uint64_t>(w) % dataset.num_windows());
  train::BatchOptions options;
  options.mask = mask;
  const train::Batch batch = train::make_batch(dataset, ids, options);
  std::vector<double> ms;
  for (int s = 0; s <= steps; ++s) {  // one warm-up
    const core::Stopwatch watch;
    model.zero_grads();
    model.forward_backward(batch.view(), 1.0 / static_cast<double>(batch.target_count));
    if (s > 0) ms.push_back(watch.elapsed_ms());
  }
  return core::median(ms);
}

void run_demo(const DemoArgs& a) {
  core::install_interrupt_handlers();  // Ctrl-C stops packing or training at a safe point
  const core::Stopwatch total;
  const fs::path out = a.out;
  // Before any work, so that an unavailable --bf16-compute native fails at once.
  const model::Bf16Compute compute =
      resolve_bf16_compute(a.bf16_compute, model::Precision::bf16, a.quiet);
  const core::FolderLock lock = prepare_out(out);

  // 1. The built-in corpus, as JSONL.
  data::BuiltinCorpusOptions corpus_options;
  corpus_options.seed = a.seed;
  corpus_options.documents = a.documents;
  corpus_options.median_chars = 700;
  const std::vector<std::string> docs = data::builtin_corpus(corpus_options);
  {
    std::string text;
    for (const std::string& d : docs)
      text += nlohmann::json{{"text", d}}.dump() + "\n";
    core::write_file_atomic(out / "corpus.jsonl", text);
  }
  say(a, fmt::format("demo: built-in corpus: {} documents ({} natural-language-like, the rest "
                     "key-value retrieval) -> {}",
                     docs.size(),
                     static_cast<long long>(static_cast<double>(docs.size()) *
                                            (1.0 - corpus_options.retrieval_fraction)),
                     (out / "corpus.jsonl").string()));

  // 2. Packed into AnchorAttention windows: [bos] doc doc ... with the byte tokenizer.
  data::PackConfig pack;
  pack.inputs = {(out / "corpus.jsonl").string()};
  pack.tokenizer = "byte";
  pack.out = (out / "data").string();
  pack.seq_len = a.seq_len;
  pack.anchor_mode = data::AnchorMode::shared;
  pack.seed = a.seed;
  pack.quiet = true;
  const nlohmann::json packed = data::pack_dataset(pack);
  say(a, fmt::format("demo: packed {} windows of {} tokens -> {}", packed.value("windows", 0),
                     a.seq_len, pack.out));

  // 3. Training: tiny model, AnchorAttention, bf16.
  train::TrainOptions t;
  t.data = out / "data";
  t.out = out / "run";
  t.preset = "tiny";
  t.run.precision = model::Precision::bf16;
  t.run.rope_mode = rope::RopeMode::hf_bf16;
  t.run.bf16_compute = compute;  // recorded with the run's options (trainer_state.json)
  t.batch.mask = attention::MaskKind::anchor;
  t.batch.positions = rope::PositionPolicy::anchor;
  t.windows_per_micro_batch = a.batch_windows;
  t.steps = a.steps;
  t.schedule.kind = train::ScheduleKind::cosine;
  t.schedule.lr = 3e-3;
  t.schedule.min_lr = 3e-4;
  t.schedule.warmup_steps = std::min<std::int64_t>(20, a.steps / 10);
  t.log_every = 10;
  t.keep_last = 1;
  t.seed = a.seed;
  t.quiet = a.quiet;
  say(a, fmt::format("demo: training the tiny model ({} steps of {} x {} tokens, AnchorAttention, "
                     "bf16, {} GEMMs) -> {}",
                     t.steps, t.windows_per_micro_batch, a.seq_len, model::to_string(compute),
                     t.out.string()));
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(t, *comm);
  const train::TrainResult result = trainer.run();

  // 4. Full attention vs AnchorAttention on the same model and windows.
  const data::Dataset dataset = data::Dataset::open(t.data);
  model::LlamaTrainModel& m = trainer.model();
  const double anchor_ms =
      time_steps(m, dataset, attention::MaskKind::anchor, a.batch_windows, a.timing_steps);
  const double full_ms =
      time_steps(m, dataset, attention::MaskKind::causal, a.batch_windows, a.timing_steps);
  say(a, fmt::format("demo: step time (forward + backward, {} windows): anchor {:.0f} ms, full "
                     "attention {:.0f} ms",
                     a.batch_windows, anchor_ms, full_ms));

  // 5. The model folder: the last checkpoint's weights and config (HF layout).
  // Written as a folder that appears whole (a full disk left a truncated model.safetensors).
  const fs::path model_dir = out / "model";
  {
    core::AtomicDir model_folder(model_dir, /*replace=*/true);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json", "special_tokens_map.json"})
      core::copy_file_atomic(result.last_checkpoint / f, model_folder.path() / f);
    model_folder.commit();
  }

  // A sample: greedy continuation of a prompt from the corpus's prose.
  std::string sample;
  {
    model::LlamaInference inference(model::load_llama_model(model_dir), 512);
    std::vector<std::int32_t> ids{256};
    const std::string prompt = "The little ";
    for (const unsigned char ch : prompt)
      ids.push_back(ch);
    std::span<const float> logits;
    for (const std::int32_t id : ids)
      logits = inference.step(id);
    sample = prompt;
    for (int i = 0; i < 160; ++i) {
      const auto best = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) -
                                                  logits.begin());
      if (best >= 256) break;
      sample.push_back(static_cast<char>(best));
      logits = inference.step(best);
    }
  }

  const double loss_first = result.steps.front().loss, loss_last = result.steps.back().loss;
  std::string report = fmt::format(
      "# anchorctx demo\n\n"
      "- corpus: {} built-in documents, packed into {} windows of {} tokens (byte tokenizer, "
      "shared anchor)\n"
      "- model: tiny preset ({} parameters), AnchorAttention, bf16 ({} GEMMs, fp32 master "
      "weights)\n"
      "- training: {} steps of {} windows, loss {:.4f} -> {:.4f}, {:.0f} tokens/s\n"
      "- step time (forward + backward, same windows): anchor {:.0f} ms, full attention {:.0f} "
      "ms (ratio {:.2f})\n"
      "- model folder: {} (HuggingFace layout, with the byte tokenizer as tokenizer.json)\n"
      "- training run: run/ (its own report: run/report.md)\n\n"
      "## Loss\n\n![loss](run/plots/loss.svg)\n\n"
      "Learning rate, gradient norm and throughput: run/plots/ (SVG and PNG).\n\n"
      "| step | loss |\n| --- | --- |\n",
      docs.size(), packed.value("windows", 0), a.seq_len, m.layout().count(),
      model::to_string(compute), result.final_step, a.batch_windows, loss_first, loss_last,
      result.tokens_per_s, anchor_ms, full_ms, anchor_ms / full_ms, model_dir.string());
  for (const train::StepRecord& r : result.steps)
    if (r.step == 1 || r.step % std::max<std::int64_t>(1, a.steps / 10) == 0)
      report += fmt::format("| {} | {:.4f} |\n", r.step, r.loss);
  report += fmt::format("\n## Sample (greedy, from \"The little \")\n\n```\n{}\n```\n", sample);
  core::write_file_atomic(out / "report.md", report);
  write_manifest(out);
  say(a, fmt::format("demo: loss {:.4f} -> {:.4f}; sample: {}", loss_first, loss_last,
                     sample.substr(0, 80)));
  say(a, fmt::format("demo: report {}, model {} ({:.0f} s)", (out / "report.md").string(),
                     model_dir.string(), total.elapsed_s()));

  if (a.json) {
    const nlohmann::json j = {{"loss_first", loss_first},
                              {"loss_last", loss_last},
                              {"steps", result.final_step},
                              {"tokens_per_s", result.tokens_per_s},
                              {"anchor_step_ms", anchor_ms},
                              {"full_step_ms", full_ms},
                              {"model_dir", model_dir.string()},
                              {"report", (out / "report.md").string()},
                              {"windows", packed.value("windows", 0)},
                              {"seq_len", a.seq_len},
                              {"parameters", m.layout().count()},
                              {"bf16_compute", std::string(model::to_string(compute))},
                              {"sample", sample},
                              {"elapsed_s", total.elapsed_s()}};
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void register_demo(CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "The embedded default: pack a built-in corpus, train a tiny model with AnchorAttention in "
      "bf16 (about two minutes on two AVX-512 cores, seven on AVX2-only ones), compare a few "
      "full-attention steps, and leave a model folder and report.md in --out");
  cmd->add_option("--out", a->out, "Output folder (a previous demo's folder is replaced)")
      ->capture_default_str();
  // Checked here, before the previous demo's folder is emptied (a bad value used to fail in
  // training, after the folder was gone).
  cmd->add_option("--steps", a->steps, "Training steps")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000000}));
  cmd->add_option("--documents", a->documents, "Built-in corpus documents")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000000}));
  cmd->add_option("--seq-len", a->seq_len, "Window length")
      ->capture_default_str()
      ->check(CLI::Range(std::int32_t{2}, std::int32_t{1} << 20));
  cmd->add_option("--batch-windows", a->batch_windows, "Windows per step")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  cmd->add_option("--seed", a->seed, "Seed of the corpus, packing and initialisation")
      ->capture_default_str();
  cmd->add_option("--bf16-compute", a->bf16_compute, kBf16ComputeHelp);
  cmd->add_flag("--quiet", a->quiet, "No progress on stderr");
  cmd->add_flag("--json", a->json,
                "End with one JSON object: loss_first, loss_last, steps, tokens_per_s, "
                "anchor_step_ms, full_step_ms, model_dir, ...");
  add_threads_option(*cmd, a->threads, kRunThreadsHelp);
  cmd->callback([a] {
    core::set_default_threads(a->threads);
    run_demo(*a);
  });
}

}  // namespace anchorctx::cli
