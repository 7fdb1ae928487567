// `anchorctx generate`: text from a model folder, token by token with a KV cache (float32).
// stdout carries the generated text only, streamed as it comes (or, with --json, one object at
// the end); the model summary and the timing go to stderr.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/blas.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/core/timing.h"
#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/generation.h"
#include "anchorctx/model/llama_inference.h"
#include "anchorctx/model/llama_weights.h"
#include "cli/commands.h"
#include "cli/threads_option.h"

namespace anchorctx::cli {
namespace {

struct Args {
  std::string model_dir;
  std::string tokenizer;  // empty: the model folder's tokenizer file
  std::string prompt, prompt_file;
  std::int64_t max_new_tokens = 256;
  float temperature = 1.0f;
  float top_p = 0.9f;
  int threads = 0;
  std::optional<std::uint64_t> seed;
  bool json = false;
};

// The length of `text` without a trailing UTF-8 sequence that more tokens may still complete,
// so that a stream never prints half a character.
std::size_t complete_utf8_prefix(const std::string& text) {
  const std::size_t n = text.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto byte = static_cast<unsigned char>(text[n - back]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const std::size_t need = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

// The text of the generated tokens as it reads after the prompt: the decode of prompt + new
// tokens minus the decode of the prompt, so that spaces and merged bytes at the seam come out as
// the tokenizer renders them (and, from bos alone, the leading space is dropped as SentencePiece
// drops it).
class TextTracker {
 public:
  TextTracker(const data::Tokenizer& tokenizer, std::vector<std::int32_t> prompt)
      : tokenizer_(tokenizer),
        ids_(std::move(prompt)),
        prompt_text_(tokenizer.decode(ids_)),
        prompt_size_(ids_.size()) {}

  // An id past the tokenizer's last one (a model whose vocab_size is padded beyond its
  // tokenizer) has no text: it prints nothing, as transformers' decode skips it, and is said
  // once on stderr; it still counts as a generated token.
  void add(std::int32_t id) {
    if (id >= 0 && id < tokenizer_.vocab_size()) {
      ids_.push_back(id);
      return;
    }
    if (!warned_)
      std::fprintf(stderr, "%s",
                   fmt::format("warning: the model generated id {}, which its tokenizer ({} "
                               "tokens) has no text for; such ids print nothing\n",
                               id, tokenizer_.vocab_size())
                       .c_str());
    warned_ = true;
  }

  std::string text() const {
    const std::string full = tokenizer_.decode(ids_);
    if (full.compare(0, prompt_text_.size(), prompt_text_) == 0)
      return full.substr(prompt_text_.size());
    // A decoder that rewrites across the seam: fall back to the new tokens alone.
    return tokenizer_.decode(std::span(ids_).subspan(prompt_size_));
  }

 private:
  const data::Tokenizer& tokenizer_;
  std::vector<std::int32_t> ids_;
  std::string prompt_text_;
  std::size_t prompt_size_;
  bool warned_ = false;
};

// What generate takes from a model folder's generation_config.json (transformers' defaults for
// generate): bos_token_id and eos_token_id (one id or a list). Empty when the file is absent.
struct GenerationConfig {
  std::optional<std::int64_t> bos_token_id;
  std::vector<std::int64_t> eos_token_ids;
};

GenerationConfig read_generation_config(const std::filesystem::path& model_dir) {
  GenerationConfig g;
  const std::filesystem::path path = model_dir / "generation_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return g;
  const nlohmann::json j = core::read_json_file(path, "generation_config.json");
  const auto id = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
      fail("{}: token ids must be non-negative integers, got {}", path.string(), v.dump());
    return v.get<std::int64_t>();
  };
  if (j.contains("bos_token_id") && !j["bos_token_id"].is_null())
    g.bos_token_id = id(j["bos_token_id"]);
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    const nlohmann::json& eos = j["eos_token_id"];
    if (eos.is_array())
      for (const nlohmann::json& e : eos)
        g.eos_token_ids.push_back(id(e));
    else
      g.eos_token_ids.push_back(id(eos));
  }
  return g;
}

// --prompt-file's bytes, read to the end as a stream: a pipe (`<(...)`, a FIFO) or a /proc file
// (whose size says 0) too, as tokenize --text-file takes them; a folder is refused by name.
std::string read_prompt_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("--prompt-file '{}' is a folder", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--prompt-file '{}': cannot open ({})", path, std::strerror(errno));
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) fail("--prompt-file '{}': read error", path);
  return text;
}

const char* stop_name(model::StopReason stop) {
  switch (stop) {
    case model::StopReason::eos:
      return "eos";
    case model::StopReason::max_new_tokens:
      return "max_new_tokens";
    case model::StopReason::context:
      return "context";
  }
  return "?";
}

void run(const Args& args) {
  // The model folder first: its tokenizer is looked for in it, and a missing folder would
  // otherwise be reported as a missing tokenizer.
  std::error_code ec;
  if (!std::filesystem::is_directory(args.model_dir, ec))
    fail("--model '{}': {}", args.model_dir,
         std::filesystem::exists(args.model_dir, ec) ? "not a model folder (not a folder)"
                                                     : "no such model folder");
  const std::unique_ptr<data::Tokenizer> tokenizer =
      data::load_tokenizer(args.tokenizer.empty() ? args.model_dir : args.tokenizer);
  const core::Stopwatch load_watch;
  model::LlamaModel loaded = model::load_llama_model(args.model_dir);
  const model::LlamaConfig config = loaded.config;
  require(tokenizer->vocab_size() <= config.vocab_size,
          "model '{}': its tokenizer has {} tokens, more than the model's vocab_size {}",
          args.model_dir, tokenizer->vocab_size(), config.vocab_size);

  // The model folder's generation defaults: its eos ids stop generation too (Llama-3-Instruct's
  // end of turn is only there); its sampling settings are not used (the options' defaults are).
  const GenerationConfig generation = read_generation_config(args.model_dir);

  std::vector<std::int32_t> prompt;
  if (const auto bos = tokenizer->prompt_bos_id()) prompt.push_back(*bos);
  const std::vector<std::int32_t> body = tokenizer->encode(
      args.prompt_file.empty() ? args.prompt : read_prompt_file(args.prompt_file));
  prompt.insert(prompt.end(), body.begin(), body.end());
  // Nothing to start from: the model's bos, as transformers' generate starts an empty input.
  if (prompt.empty()) {
    if (const auto bos =
            generation.bos_token_id.has_value() ? generation.bos_token_id : config.bos_token_id)
      prompt.push_back(static_cast<std::int32_t>(*bos));
  }
  require(!prompt.empty(),
          "generate: an empty prompt needs a bos token (the tokenizer's, or bos_token_id in "
          "config.json or generation_config.json)");
  for (const std::int32_t id : prompt)
    require(id >= 0 && id < config.vocab_size,
            "generate: prompt token {} is outside the model's vocabulary of {}", id,
            config.vocab_size);
  // Before the KV cache is sized for it (a 100 MB prompt reserved gigabytes first).
  require(static_cast<std::int64_t>(prompt.size()) <= model::generation_context(config),
          "generate: the prompt has {} tokens, more than the model's context of {}", prompt.size(),
          model::generation_context(config));

  model::GenerateOptions options;
  options.max_new_tokens = args.max_new_tokens;
  options.sampling.temperature = args.temperature;
  options.sampling.top_p = args.top_p;
  // Without --seed a fresh one each run, printed so that a run can be repeated.
  options.sampling.seed = args.seed.value_or(
      static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()));
  if (const auto eos = tokenizer->eos_id()) options.stop_ids.push_back(*eos);
  // Ids the model can emit only (one past int32 narrowed onto another token).
  for (const std::vector<std::int64_t>* ids : {&config.eos_token_ids, &generation.eos_token_ids})
    for (const std::int64_t id : *ids)
      if (id >= 0 && id < config.vocab_size)
        options.stop_ids.push_back(static_cast<std::int32_t>(id));

  // The KV cache holds at most what can be generated: generation stops at the model's context
  // (StopReason::context), so a --max-new-tokens beyond it must not size the cache (2^30 tokens
  // ran out of memory). A prompt longer than the context is refused by generate itself.
  const auto prompt_tokens = static_cast<std::int64_t>(prompt.size());
  const std::int64_t cache_tokens =
      std::min(prompt_tokens + args.max_new_tokens,
               std::max(prompt_tokens, model::generation_context(config)));
  model::LlamaInference inference(std::move(loaded), cache_tokens);
  std::fprintf(stderr, "%s",
               fmt::format("loaded {} (hidden {}, {} layers, vocab {}) in {:.2f} s; prompt {} "
                           "tokens, temperature {}, top-p {}, seed {}\n",
                           args.model_dir, config.hidden_size, config.num_hidden_layers,
                           config.vocab_size, load_watch.elapsed_s(), prompt.size(),
                           args.temperature, args.top_p, options.sampling.seed)
                   .c_str());

  TextTracker tracker(*tokenizer, prompt);
  std::string shown;  // the text already on stdout
  // Prints what `text` adds to what is shown, up to `end`; nothing if a decoder rewrote the
  // shown part (never the case for SentencePiece-style pieces).
  const auto show = [&](const std::string& text, std::size_t end) {
    if (end <= shown.size() || text.compare(0, shown.size(), shown) != 0) return;
    std::fwrite(text.data() + shown.size(), 1, end - shown.size(), stdout);
    std::fflush(stdout);
    shown.assign(text, 0, end);
  };
  const auto stream = [&](std::int32_t id) {
    tracker.add(id);
    if (args.json) return;
    const std::string text = tracker.text();
    show(text, complete_utf8_prefix(text));
  };

  const core::Stopwatch watch;
  const model::GenerateResult result = model::generate(inference, prompt, options, stream);
  const double seconds = watch.elapsed_s();
  const double ms_per_token =
      inference.position() > 0 ? seconds * 1e3 / static_cast<double>(inference.position()) : 0.0;
  const std::string text = tracker.text();

  if (args.json) {
    // Invalid UTF-8 (a byte-fallback sequence cut by the token limit) becomes U+FFFD.
    fmt::print("{}\n", nlohmann::json{{"text", text},
                                      {"tokens", result.tokens},
                                      {"prompt_tokens", prompt.size()},
                                      {"stop", stop_name(result.stop)},
                                      {"seed", options.sampling.seed},
                                      {"ms_per_token", ms_per_token}}
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else {
    // Whatever the stream held back (an incomplete character at the very end), then a newline
    // on stderr so that a terminal's prompt starts on a fresh line while stdout stays the text.
    show(text, text.size());
    std::fputc('\n', stderr);
  }
  std::fprintf(
      stderr, "%s",
      fmt::format("{} new tokens (stop: {}), {:.2f} ms per token over {} positions\n",
                  result.tokens.size(), stop_name(result.stop), ms_per_token, inference.position())
          .c_str());
}

}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Generate text with a model folder (config.json, model.safetensors, a tokenizer file), "
      "token by token in float32 with a KV cache. The prompt starts with bos where the tokenizer's "
      "own encoding adds one (a tokenizer.json's post-processor decides, as for transformers' "
      "AutoTokenizer: a bos it does not add is not added); an empty prompt starts from bos alone "
      "(the model's bos_token_id where the tokenizer adds none). Generation stops at the "
      "tokenizer's eos and the eos_token_id ids of config.json and generation_config.json; the "
      "latter's sampling settings are not used (the options below are). stdout carries the "
      "generated text only.");
  cmd->add_option("--model", args->model_dir, "The model folder")->required();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "'byte' or a tokenizer file (default: the one in the model folder)");
  auto* prompt = cmd->add_option("--prompt", args->prompt, "The text to continue (may be empty)");
  auto* prompt_file =
      cmd->add_option("--prompt-file", args->prompt_file,
                      "A file whose bytes are the prompt, taken as they are (any bytes the "
                      "tokenizer takes, any length; a trailing newline is part of it)");
  prompt->excludes(prompt_file);
  cmd->add_option("--max-new-tokens", args->max_new_tokens,
                  "Stop after this many new tokens (earlier at eos or the model's context)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 30));
  cmd->add_option("--temperature", args->temperature, "0: greedy (argmax); else sampling")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-p", args->top_p,
                  "Nucleus sampling: sample among the most probable tokens holding this mass, "
                  "in (0, 1] (1: all)")
      ->capture_default_str()
      // (0, 1]: the sampler's own rule, checked before the model loads (CLI::Range admits 0).
      ->check(CLI::Validator(
          [](const std::string& value) -> std::string {
            const float p = std::strtof(value.c_str(), nullptr);
            return p > 0.0f && p <= 1.0f ? "" : "Value " + value + " not in (0, 1]";
          },
          "FLOAT in (0, 1]"));
  cmd->add_option("--seed", args->seed, "Seed of the sampler (default: from the clock, printed)");
  cmd->add_flag("--json", args->json,
                "Print one JSON object on stdout instead of the text: text, tokens (new ids), "
                "prompt_tokens, stop (eos, max_new_tokens or context), seed, ms_per_token");
  add_threads_option(*cmd, args->threads, kRunThreadsHelp);
  cmd->callback([args, prompt, prompt_file] {
    if (prompt->count() == 0 && prompt_file->count() == 0)
      throw CLI::RequiredError("--prompt or --prompt-file");
    core::set_default_threads(args->threads);
    run(*args);
  });
}

}  // namespace anchorctx::cli
