// The subcommands of the `anchorctx` executable. main.cpp only dispatches: each subcommand
// lives in its own file and registers its options and its callback on a parent CLI11 app.
//
// A callback signals failure by throwing: anchorctx::Error (or any std::exception) for a
// failed run (main prints "anchorctx: error: ..." and exits 1), CLI::ValidationError for a bad
// combination of options (a usage error: exit 2).
#pragma once

#include <CLI/CLI.hpp>

#include "anchorctx/version.h"

namespace anchorctx::cli {

// `anchorctx bench attention`: forward/backward kernel timings against an sgemm yardstick.
void register_bench_attention(CLI::App& bench);

// `anchorctx tokenize`: text to token ids, or back with --decode.
void register_tokenize(CLI::App& app);

// `anchorctx pack`: corpora into a packed dataset folder.
void register_pack(CLI::App& app);

// `anchorctx inspect`: describe and validate a packed dataset folder.
void register_inspect(CLI::App& app);

// `anchorctx convert`: model formats into a HuggingFace-style folder (`convert llama2c`).
void register_convert(CLI::App& app);

// `anchorctx generate`: text from a model folder with a KV cache.
void register_generate(CLI::App& app);

// Sets the options of `cmd` that the command line left out from a TOML file (`key = value`,
// keys are long option names without the dashes). Throws anchorctx::Error naming the file and
// the key on an unknown key or a bad value.
void apply_toml_options(CLI::App& cmd, const std::string& path);

// Refuses, on every integer option of `app` and its subcommands, a value beyond 64 bits and a
// negative value for an unsigned option (CLI11 would saturate or wrap them). Call once the tree
// is built.
void check_integer_ranges(CLI::App& app);

// `anchorctx train`: a model on a packed dataset, with checkpoints and resume.
void register_train(CLI::App& app);

// `anchorctx demo`: the embedded default: pack a built-in corpus, train a tiny model with
// AnchorAttention in bf16, compare a few full-attention steps, leave a model and a report.
void register_demo(CLI::App& app);

// `anchorctx bench train`: training step time, throughput, MFU and peak memory.
void register_bench_train(CLI::App& bench);

// `anchorctx rope-drift`: how much bf16 RoPE moves attention under a position shift.
void register_rope_drift(CLI::App& app);

// `anchorctx eval`: perplexity by position and length, RULER-style needle tasks, a report.
void register_eval(CLI::App& app);

// `anchorctx plan`: the cost model of a distributed training step (FLOPs, memory, bytes, time).
void register_plan(CLI::App& app);
// `anchorctx study`: the paper's experiment at small scale (docs/STUDY.md).
void register_study(CLI::App& app);

}  // namespace anchorctx::cli
