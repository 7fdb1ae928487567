// run_study (study.h): the stages in order, each sub-run skipped when its done marker exists and
// resumed from its newest checkpoint when interrupted; progress with an ETA on stderr.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/analysis/rope_drift.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/folder_lock.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/builtin_corpus.h"
#include "anchorctx/data/pack.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/dist/communicator.h"
#include "anchorctx/eval/engine.h"
#include "anchorctx/eval/evaluation.h"
#include "anchorctx/eval/ruler.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama_weights.h"
#include "anchorctx/model/parameters.h"
#include "anchorctx/rope/positions.h"
#include "anchorctx/study/study.h"
#include "anchorctx/train/trainer.h"
#include "study/files.h"

namespace anchorctx::study {

namespace fs = std::filesystem;

namespace {

// Work in model FLOPs so one ETA covers stages whose cost per token differs: at stage 1's long
// window attention outweighs the matrix products of a small model, which a count of tokens
// misses (it put the default study's stage-1 time at a third of what it took).
struct Eta {
  double total = 0.0, done = 0.0;  // work of the whole study / finished before or during this run
  double measured_work = 0.0;      // work finished by this process (timed)
  core::Stopwatch watch;
  std::string line(double extra_done) const {
    const double rate =
        measured_work + extra_done > 0 ? watch.elapsed_s() / (measured_work + extra_done) : 0.0;
    const double left = std::max(0.0, total - done - extra_done);
    const int pct = total > 0 ? static_cast<int>(100.0 * (done + extra_done) / total) : 0;
    if (rate <= 0) return fmt::format("{}%", pct);
    const auto s = static_cast<long long>(rate * left);
    return fmt::format("{}%, ETA {}h{:02}m{:02}s", pct, s / 3600, (s % 3600) / 60, s % 60);
  }
};

// Forward FLOPs per token at a context of `context` tokens: 2 per weight of the matrix products
// and QK^T and PV over the causal half of the context.
double forward_flops_per_token(const model::LlamaConfig& m, std::int64_t context) {
  const double attention = 2.0 * static_cast<double>(m.num_hidden_layers * m.q_dim() * context);
  return 2.0 * model::matrix_parameter_count(m) + attention;
}

// A training step costs about three forwards (the backward two).
double train_work(const model::LlamaConfig& m, std::int64_t steps, std::int64_t windows,
                  std::int32_t seq_len) {
  return 3.0 * static_cast<double>(steps * windows * seq_len) * forward_flops_per_token(m, seq_len);
}

double eval_work(const StudyConfig& c, const model::LlamaConfig& m) {
  const auto prompts = static_cast<double>(
      static_cast<std::int64_t>(c.eval_tasks.size()) * c.eval_samples + c.eval_ppl_samples);
  double work = 0.0;
  for (const std::int64_t l : c.eval_lengths)
    work += prompts * static_cast<double>(l) * forward_flops_per_token(m, l);
  return work;
}

// The corpus as JSONL, and its packed dataset (skipped when already complete: pack writes
// through an AtomicDir, so meta.json exists only in a finished folder).
fs::path make_dataset(const fs::path& out, const std::string& name,
                      const data::BuiltinCorpusOptions& corpus, std::int32_t seq_len,
                      std::uint64_t seed) {
  const fs::path dir = out / "data" / name;
  if (fs::exists(dir / "meta.json")) return dir;
  // pack appears whole or not at all (an interrupted one leaves a hidden temporary, swept), so
  // a folder of this name without meta.json was damaged after it was written.
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dir, ec)))
    fail(
        "study: {} is not a finished dataset (no meta.json); delete it and rerun the study to "
        "pack it again",
        dir.string());
  fs::create_directories(out / "data");
  const fs::path jsonl = out / "data" / (name + ".jsonl");
  std::string text;
  for (const std::string& d : data::builtin_corpus(corpus))
    text += nlohmann::json{{"text", d}}.dump() + "\n";
  core::write_file_atomic(jsonl, text);
  data::PackConfig pack;
  pack.inputs = {jsonl.string()};
  pack.tokenizer = "byte";
  pack.out = dir.string();
  pack.seq_len = seq_len;
  pack.anchor_mode = data::AnchorMode::shared;  // every window starts with bos (the anchor)
  pack.seed = seed;
  pack.quiet = true;
  data::pack_dataset(pack);
  return dir;
}

train::TrainOptions base_train_options(const fs::path& data, const fs::path& run) {
  train::TrainOptions t;
  t.data = data;
  t.out = run;
  t.resume = true;  // a new run when the folder holds no checkpoint yet
  t.log_every = 1;
  t.keep_last = 2;  // the newest and one before: an interrupted run resumes from the newest
  t.tensorboard = false;
  t.quiet = true;  // the study prints its own progress line
  t.continue_hint = "rerun the same study command to continue";
  t.nonfinite_hint = "";       // the study has no --skip-nonfinite; it records the divergence
  t.announce_new_run = false;  // every run of the study starts so; --quiet means quiet
  t.schedule.kind = train::ScheduleKind::cosine;
  return t;
}

// Trains to completion (or finds it complete) and returns the final checkpoint.
fs::path train_run(train::TrainOptions t, Eta& eta, double work, const std::string& what,
                   bool quiet) {
  auto comm = dist::make_single_process_communicator();
  train::Trainer trainer(t, *comm);
  const std::int64_t start = trainer.step();
  if (!quiet && start > 0)
    std::fprintf(stderr, "study: %s: resuming at step %lld of %lld\n", what.c_str(),
                 static_cast<long long>(start), static_cast<long long>(t.steps));
  const double per_step = work / static_cast<double>(t.steps);
  eta.done += per_step * static_cast<double>(start);
  const train::TrainResult r = trainer.run([&](const train::StepRecord& s) {
    if (quiet) return;
    const double extra = per_step * static_cast<double>(s.step - start);
    std::fprintf(stderr, "study: %s: step %lld/%lld, loss %.4f, %.1f s/step (%s)\n", what.c_str(),
                 static_cast<long long>(s.step), static_cast<long long>(t.steps), s.loss,
                 s.step_ms / 1000.0, eta.line(extra).c_str());
  });
  const double ran = per_step * static_cast<double>(r.final_step - start);
  eta.done += ran;
  eta.measured_work += ran;
  return r.last_checkpoint;
}

// Stage 0's final weights with the stage-1 config: RoPE base raised, window 8x.
fs::path make_long_init(const StudyConfig& c, const fs::path& checkpoint, const fs::path& dir) {
  fs::create_directories(dir);
  model::LlamaConfig config = model::load_config(checkpoint);
  config.rope_theta = c.stage1_rope_theta;
  config.max_position_embeddings = c.stage1_seq_len;
  model::save_config(config, dir / "config.json");
  core::copy_file_atomic(checkpoint / "model.safetensors", dir / "model.safetensors");
  return dir;
}

// Held-out documents (token ids, no bos): the built-in corpus under another seed, with stage
// 1's long documents; the held-out loss and the RoPE drift read them.
std::vector<std::vector<std::int32_t>> held_out_documents(const StudyConfig& c,
                                                          const data::Tokenizer& tok) {
  data::BuiltinCorpusOptions corpus;
  corpus.seed = c.corpus_seed + 987654321;
  corpus.retrieval_fraction = c.retrieval_fraction;
  corpus.median_chars = c.stage1_median_chars;
  corpus.max_chars = c.stage1_max_chars;
  const std::int64_t length = std::max<std::int64_t>(c.eval_lengths.back(), c.stage1_seq_len);
  corpus.documents =
      std::max<std::int64_t>(20, c.eval_ppl_samples * (length + 64) * 2 /
                                         std::max<std::int64_t>(1, c.stage1_median_chars) +
                                     20);
  std::vector<std::vector<std::int32_t>> docs;
  for (const std::string& text : data::builtin_corpus(corpus))
    docs.push_back(tok.encode(text));
  return docs;
}

// Held-out ppl windows: every document after a bos, as training sees it.
std::vector<eval::PplSample> held_out_ppl(const StudyConfig& c, const data::Tokenizer& tok,
                                          const std::vector<std::vector<std::int32_t>>& held_out) {
  std::vector<std::vector<std::int32_t>> docs;
  for (const std::vector<std::int32_t>& ids : held_out) {
    std::vector<std::int32_t> d{*tok.bos_id()};
    d.insert(d.end(), ids.begin(), ids.end());
    docs.push_back(std::move(d));
  }
  const std::int64_t length = c.eval_lengths.back();
  std::vector<eval::PplSample> s = eval::samples_from_documents(docs, length, c.eval_ppl_samples);
  require(!s.empty(), "study: the held-out corpus holds fewer than {} tokens", length + 1);
  return s;
}

// The bf16 RoPE drift of one final model (docs/STUDY.md, "The bf16 RoPE drift"): rope-drift's
// measurement with every position shifted (the global policy, where exact arithmetic gives D =
// 0), in the bf16 variants' RoPE (hf_bf16) and in fp32 (the float32 floor), the paper's delta1
// values, on one held-out sequence of the stage-1 window. Writes the drift/ report folder and
// returns drift-done.json's summary.
nlohmann::json measure_drift(const StudyConfig& c, const fs::path& model_dir, const fs::path& dir,
                             const std::vector<std::vector<std::int32_t>>& sequences) {
  const model::LlamaConfig config = model::load_model_config(model_dir);
  const std::vector<float> params =
      model::load_parameters(model_dir, model::ParameterLayout::for_config(config));
  analysis::RopeDriftOptions o;
  o.seq_len = c.stage1_seq_len;
  o.modes = {"hf_bf16", "fp32"};
  o.policies = {rope::PositionPolicy::global};
  const analysis::RopeDriftReport r = analysis::measure_rope_drift(config, params, sequences, o);
  analysis::write_report(r, model_dir.string(), (dir / "drift").string());
  return drift_summary(r);
}

// The needle-task settings every evaluation of the study shares: tasks, lengths, prompts per
// cell, seed, wording and haystack.
eval::EvalOptions needle_options(const StudyConfig& c, const std::string& haystack) {
  eval::EvalOptions o;
  o.tasks = c.eval_tasks;
  o.lengths = c.eval_lengths;
  o.samples = c.eval_samples;
  o.seed = c.eval_seed;
  o.templates = eval::default_templates().at(c.eval_template_set);
  o.template_set_name = c.eval_template_set;
  o.haystack_text = haystack;
  return o;
}

// Evaluates a model folder in the study's precision, writes dir/eval and returns its summary.
nlohmann::json evaluate_into(const StudyConfig& c, const fs::path& model_dir, const fs::path& dir,
                             const data::Tokenizer& tok, const eval::EvalOptions& o,
                             const eval::EvalProgress& progress = {}) {
  eval::Engine engine(model::load_llama_model(model_dir),
                      {c.eval_precision, 1024, 0, 4096, c.bf16_compute});
  eval::EvalReport report = eval::run_evaluation(engine, tok, o, progress);
  report.model = model_dir.string();
  report.precision = std::string(model::to_string(c.eval_precision));
  if (c.eval_precision == model::Precision::bf16)
    report.bf16_compute = std::string(model::to_string(c.bf16_compute));
  eval::write_report(report, dir / "eval");
  return eval_summary(report);
}

// Evaluates one final model: the needle tasks and the held-out loss by position. `work` is its
// share of the ETA's total (eval_work).
nlohmann::json evaluate(const StudyConfig& c, const fs::path& model_dir, const fs::path& dir,
                        const data::Tokenizer& tok, const std::vector<eval::PplSample>& ppl,
                        const std::string& haystack, Eta& eta, double work, const std::string& what,
                        bool quiet) {
  eval::EvalOptions o = needle_options(c, haystack);
  o.tasks.push_back("ppl");
  o.ppl_samples = ppl;
  o.ppl_source = "built-in corpus, held-out seed";
  eval::EvalProgress progress;
  if (!quiet)
    progress = [&](std::int64_t done, std::int64_t total, const std::string& next) {
      const double extra = total > 0 ? work * static_cast<double>(done) / total : 0.0;
      std::fprintf(stderr, "study: %s: eval %lld/%lld %s (%s)\n", what.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), next.c_str(),
                   eta.line(extra).c_str());
    };
  const nlohmann::json summary = evaluate_into(c, model_dir, dir, tok, o, progress);
  eta.done += work;
  eta.measured_work += work;
  return summary;
}

// Stage 0's own retrieval, at its own window and RoPE base: stage 1 can only extend a lookup
// that stage 0 learned, so the report shows it beside the stage-1 scores (docs/STUDY.md).
// More prompts than a stage-1 cell (4x), since this is one model at one length.
nlohmann::json check_stage0(const StudyConfig& c, const fs::path& checkpoint, const fs::path& dir,
                            const data::Tokenizer& tok, const std::string& haystack) {
  eval::EvalOptions o = needle_options(c, haystack);
  o.lengths = {stage0_check_length(c)};
  o.samples = 4 * c.eval_samples;
  return evaluate_into(c, checkpoint, dir, tok, o);
}

// study.json: the settings the folder was started with. Another setting is refused by name.
void check_settings(const StudyConfig& c, const fs::path& out) {
  const fs::path path = out / "study.json";
  const nlohmann::json now = c.to_json();
  if (!fs::exists(path)) {
    core::write_file_atomic(path, nlohmann::json{{"config", now}}.dump(2) + "\n");
    return;
  }
  const std::string diff = settings_difference(recorded_settings(path), now);
  require(diff.empty(),
          "study: {} was started with other settings: {}; use another --out folder to study "
          "other settings",
          out.string(), diff);
}

}  // namespace

void run_study(const StudyConfig& c, const fs::path& out, const StudyOptions& options) {
  validate(c);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) fail("study: cannot create --out {}: {}", out.string(), ec.message());
  const core::FolderLock lock = core::FolderLock::acquire(out, "study folder");
  check_settings(c, out);
  const bool quiet = options.quiet;
  const auto say = [&](const std::string& s) {
    if (!quiet) std::fprintf(stderr, "study: %s\n", s.c_str());
  };

  const std::vector<RunId> runs = stage1_runs(c);
  Eta eta;
  const model::LlamaConfig shape = model::preset(c.preset);
  const double s0_work =
      train_work(shape, c.stage0_steps, c.stage0_batch_windows, c.stage0_seq_len);
  const double s1_work =
      train_work(shape, c.stage1_steps, c.stage1_batch_windows, c.stage1_seq_len);
  const double e_work = eval_work(c, shape);
  eta.total = s0_work + static_cast<double>(runs.size()) * (s1_work + e_work);
  if (fs::exists(out / "stage0" / "done.json")) eta.done += s0_work;
  for (const RunId& r : runs) {
    if (fs::exists(out / "stage1" / r.name() / "failed.json")) {
      eta.done += s1_work + e_work;
      continue;
    }
    if (fs::exists(out / "stage1" / r.name() / "train-done.json")) eta.done += s1_work;
    if (fs::exists(out / "stage1" / r.name() / "eval-done.json")) eta.done += e_work;
  }
  say(fmt::format("{} stage-1 runs ({} variants, seeds {}), {:.0f}% done before this call",
                  runs.size(), c.variants.size(), nlohmann::json(c.seeds).dump(),
                  100.0 * eta.done / eta.total));

  // Data: stage 0 short documents, stage 1 long ones upsampled; both with retrieval documents.
  data::BuiltinCorpusOptions s0;
  s0.seed = c.corpus_seed;
  s0.documents = c.stage0_documents;
  s0.retrieval_fraction = c.retrieval_fraction;
  s0.median_chars = c.stage0_median_chars;
  const fs::path data0 = make_dataset(out, "stage0", s0, c.stage0_seq_len, c.corpus_seed);
  // Stage 1's documents are the same for every run; the seed shuffles their windows, so a seed
  // is one data order, shared by every variant of that seed.
  data::BuiltinCorpusOptions s1 = s0;
  s1.seed = c.corpus_seed + 1;
  s1.documents = c.stage1_documents;
  s1.median_chars = c.stage1_median_chars;
  s1.max_chars = c.stage1_max_chars;

  // Stage 0: plain causal pretraining in bf16, one run shared by every variant.
  const fs::path stage0 = out / "stage0";
  fs::path checkpoint0;
  if (fs::exists(stage0 / "done.json")) {
    checkpoint0 = recorded_folder(out, stage0 / "done.json", "checkpoint");
  } else {
    train::TrainOptions t = base_train_options(data0, stage0 / "run");
    model::LlamaConfig config = model::preset(c.preset);
    config.rope_theta = c.stage0_rope_theta;
    fs::create_directories(stage0);
    model::save_config(config, stage0 / "config.json");
    t.config_json = stage0 / "config.json";
    t.run.precision = model::Precision::bf16;
    t.run.rope_mode = rope::RopeMode::hf_bf16;
    t.run.bf16_compute = c.bf16_compute;
    t.batch.mask = attention::MaskKind::causal;
    t.batch.positions = rope::PositionPolicy::global;
    t.windows_per_micro_batch = c.stage0_batch_windows;
    t.steps = c.stage0_steps;
    t.schedule.lr = c.stage0_lr;
    t.schedule.min_lr = c.stage0_lr / 10;
    t.schedule.warmup_steps = std::min<std::int64_t>(20, c.stage0_steps / 10);
    t.save_every = c.save_every;
    t.seed = c.corpus_seed;
    say(fmt::format("stage 0: {} ({} steps of {} x {} tokens, causal, bf16)", c.preset, t.steps,
                    t.windows_per_micro_batch, c.stage0_seq_len));
    try {
      checkpoint0 = train_run(t, eta, s0_work, "stage 0", quiet);
    } catch (const train::TrainingDiverged& e) {
      // Every stage-1 run starts from stage 0: nothing can go on.
      fail(
          "study: stage 0 diverged: {}; every stage-1 run starts from it, so the study stops. "
          "A lower --stage0-lr is another study: give it another --out folder",
          e.what());
    }
    write_json(stage0 / "done.json", {{"checkpoint", recorded_path(out, checkpoint0)}});
  }
  const fs::path init1 = make_long_init(c, checkpoint0, stage0 / "long");

  const std::unique_ptr<data::Tokenizer> tok = data::make_byte_tokenizer();
  const std::string haystack = eval::builtin_prose();
  if (!fs::exists(stage0 / "eval-done.json")) {
    say(fmt::format("stage 0: retrieval at {} tokens", stage0_check_length(c)));
    write_json(stage0 / "eval-done.json", check_stage0(c, checkpoint0, stage0, *tok, haystack));
  }
  write_study_report(c, out, options);

  const std::vector<std::vector<std::int32_t>> held_out = held_out_documents(c, *tok);
  const std::vector<eval::PplSample> ppl = held_out_ppl(c, *tok, held_out);
  const std::vector<std::vector<std::int32_t>> drift_sequences = analysis::make_sequences(
      held_out, 1, c.stage1_seq_len, data::default_anchor_id(*tok).value_or(-1),
      tok->eos_id().value_or(-1));  // opened with pack's anchor, as rope-drift does

  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RunId& r = runs[i];
    const Variant& v = *find_variant(r.variant);
    const fs::path dir = out / "stage1" / r.name();
    const std::string what = fmt::format("[{}/{}] {}", i + 1, runs.size(), r.name());
    // A diverged run is a result (docs/STUDY.md, "Resume"): recorded once, never retrained by
    // a rerun (it would diverge again, the same bits), and the other runs go on.
    if (fs::exists(dir / "failed.json")) {
      read_failed_marker(dir / "failed.json");  // a marker of another shape is named
      say(fmt::format("{}: diverged in training before (failed.json); delete {} to train it again",
                      what, dir.string()));
      continue;
    }
    if (!fs::exists(dir / "train-done.json")) {
      const fs::path data1 =
          make_dataset(out, fmt::format("stage1-s{}", r.seed), s1, c.stage1_seq_len, r.seed);
      train::TrainOptions t = base_train_options(data1, dir / "run");
      t.init_from = init1;
      t.run.precision = v.precision;
      t.run.rope_mode = v.rope_mode;
      t.run.bf16_compute = c.bf16_compute;  // no effect on the fp32 variants
      t.batch.mask = v.mask;
      t.batch.positions = v.positions;
      t.windows_per_micro_batch = c.stage1_batch_windows;
      t.steps = c.stage1_steps;
      t.schedule.lr = c.stage1_lr;
      t.schedule.min_lr = c.stage1_lr / 10;
      t.schedule.warmup_steps = std::min<std::int64_t>(10, c.stage1_steps / 10);
      t.save_every = c.save_every;
      t.seed = r.seed;
      say(fmt::format("{}: training ({})", what, v.label));
      fs::path trained;
      try {
        trained = train_run(t, eta, s1_work, what, quiet);
      } catch (const train::TrainingDiverged& e) {
        write_json(dir / "failed.json", {{"stage", "training"}, {"reason", e.what()}});
        // Said even with --quiet: it is the run's whole outcome.
        std::fprintf(stderr,
                     "study: %s diverged in training: %s; recorded in %s, the study goes on with "
                     "the other runs (delete %s to train it again)\n",
                     r.name().c_str(), e.what(), (dir / "failed.json").string().c_str(),
                     dir.string().c_str());
        eta.done += e_work;
        write_study_report(c, out, options);
        continue;
      }
      // A retrained model invalidates whatever was measured on an earlier one.
      fs::remove(dir / "eval-done.json");
      fs::remove(dir / "drift-done.json");
      nlohmann::json summary = train_summary(dir / "run", trained);
      summary["checkpoint"] = recorded_path(out, trained);
      write_json(dir / "train-done.json", summary);
    }
    const fs::path ck = recorded_folder(out, dir / "train-done.json", "checkpoint");
    if (!fs::exists(dir / "eval-done.json")) {
      say(fmt::format("{}: evaluating", what));
      write_json(dir / "eval-done.json",
                 evaluate(c, ck, dir, *tok, ppl, haystack, eta, e_work, what, quiet));
    }
    if (!fs::exists(dir / "drift-done.json")) {
      say(fmt::format("{}: bf16 RoPE drift", what));
      write_json(dir / "drift-done.json", measure_drift(c, ck, dir, drift_sequences));
    }
    write_study_report(c, out, options);
  }
  say(fmt::format("done in {:.0f} s: {}", eta.watch.elapsed_s(), (out / "report.md").string()));
}

}  // namespace anchorctx::study
