// `anchorctx convert`: model formats in and out of the HuggingFace-style model folder.
// `convert llama2c` imports a llama2.c checkpoint and its tokenizer; `convert to-llama2c` exports
// a model folder back to a llama2.c checkpoint.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/timing.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/config.h"
#include "anchorctx/model/llama2c.h"
#include "cli/commands.h"

namespace anchorctx::cli {
namespace {

struct Llama2cArgs {
  std::string checkpoint;
  std::string tokenizer;
  std::string out;
  bool force = false;
  bool json = false;
};

void run_llama2c(const Llama2cArgs& args) {
  const core::Stopwatch watch;
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(args.tokenizer);
  const model::LlamaConfig config = model::import_llama2c(
      args.checkpoint, {args.tokenizer, tokenizer->kind(), tokenizer->vocab_size()}, args.out,
      args.force);
  const std::int64_t parameters = model::parameter_count(config);
  if (args.json) {
    fmt::print("{}\n", nlohmann::json{{"model_dir", args.out},
                                      {"parameters", parameters},
                                      {"hidden_size", config.hidden_size},
                                      {"num_hidden_layers", config.num_hidden_layers},
                                      {"vocab_size", config.vocab_size},
                                      {"tie_word_embeddings", config.tie_word_embeddings},
                                      {"seconds", watch.elapsed_s()}}
                           .dump());
  }
  std::fprintf(
      stderr, "%s",
      fmt::format("imported {} ({} parameters: hidden {}, {} layers, {} heads, {} kv "
                  "heads, vocab {}, context {}) -> {} in {:.2f} s\n",
                  args.checkpoint, parameters, config.hidden_size, config.num_hidden_layers,
                  config.num_attention_heads, config.num_key_value_heads, config.vocab_size,
                  config.max_position_embeddings, args.out, watch.elapsed_s())
          .c_str());
}

struct ToLlama2cArgs {
  std::string model;
  std::string out;
  bool force = false;
  bool json = false;
};

void run_to_llama2c(const ToLlama2cArgs& args) {
  const core::Stopwatch watch;
  const model::Llama2cHeader h = model::export_llama2c(args.model, args.out, args.force);
  const auto bytes = std::filesystem::file_size(args.out);
  if (args.json) {
    fmt::print("{}\n", nlohmann::json{{"checkpoint", args.out},
                                      {"bytes", bytes},
                                      {"dim", h.dim},
                                      {"hidden_dim", h.hidden_dim},
                                      {"n_layers", h.n_layers},
                                      {"n_heads", h.n_heads},
                                      {"n_kv_heads", h.n_kv_heads},
                                      {"vocab_size", h.vocab_size},
                                      {"shared_classifier", h.shared_classifier},
                                      {"seq_len", h.seq_len},
                                      {"seconds", watch.elapsed_s()}}
                           .dump());
  }
  std::fprintf(stderr, "%s",
               fmt::format("exported {} (dim {}, hidden_dim {}, {} layers, {} heads, {} kv heads, "
                           "vocab {}{}, seq_len {}) -> {} ({} bytes) in {:.2f} s\n",
                           args.model, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
                           h.vocab_size, h.shared_classifier ? "" : " with its own classifier",
                           h.seq_len, args.out, bytes, watch.elapsed_s())
                   .c_str());
}

}  // namespace

void register_convert(CLI::App& app) {
  CLI::App* convert =
      app.add_subcommand("convert", "Convert models into (or out of) a HuggingFace-style folder");
  convert->require_subcommand(1);

  auto args = std::make_shared<Llama2cArgs>();
  CLI::App* cmd = convert->add_subcommand(
      "llama2c",
      "Import a llama2.c checkpoint (legacy export: 7 int32 header, float32 weights) and its "
      "tokenizer into a model folder: config.json, model.safetensors (F32), tokenizer.bin.\n"
      "The rows of wq and wk are permuted within each head, from llama2.c's adjacent-pair RoPE "
      "to HuggingFace's rotate-half layout, so that transformers computes the same model.");
  cmd->add_option("--checkpoint", args->checkpoint, "The llama2.c checkpoint (e.g. stories15M.bin)")
      ->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Its llama2.c tokenizer (tokenizer.bin, tok512.bin, ...)")
      ->required();
  cmd->add_option("--out", args->out, "The model folder to create (must not exist)")->required();
  cmd->add_flag("--force", args->force, "Replace --out if it exists");
  cmd->add_flag("--json", args->json,
                "Print one JSON object on stdout: model_dir, parameters, hidden_size, "
                "num_hidden_layers, vocab_size, tie_word_embeddings, seconds");
  cmd->callback([args] { run_llama2c(*args); });

  auto to_args = std::make_shared<ToLlama2cArgs>();
  CLI::App* to = convert->add_subcommand(
      "to-llama2c",
      "Export a model folder (config.json + safetensors, any dtype) as a llama2.c checkpoint in "
      "the legacy format `convert llama2c` reads and llama2.c's run.c runs: 7 int32 header, "
      "float32 weights, the RoPE tables run.c skips, the classifier when not tied.\n"
      "The rows of wq and wk are permuted back to llama2.c's adjacent-pair RoPE layout. Only "
      "models run.c computes exactly are written: biases, rope_scaling, rope_theta other than "
      "10000, rms_norm_eps other than 1e-5, head_dim other than hidden_size / "
      "num_attention_heads and sliding_window are refused, each named. The tokenizer is not "
      "converted: give run.c the llama2.c tokenizer.bin (a folder imported by `convert llama2c` "
      "holds it).");
  to->add_option("--model", to_args->model, "The model folder")->required();
  to->add_option("--out", to_args->out,
                 "The checkpoint file to write (e.g. model.bin; must not exist; its folder must)")
      ->required();
  to->add_flag("--force", to_args->force, "Replace --out if it exists");
  to->add_flag("--json", to_args->json,
               "Print one JSON object on stdout: checkpoint, bytes, dim, hidden_dim, n_layers, "
               "n_heads, n_kv_heads, vocab_size, shared_classifier, seq_len, seconds");
  to->callback([to_args] { run_to_llama2c(*to_args); });
}

}  // namespace anchorctx::cli
