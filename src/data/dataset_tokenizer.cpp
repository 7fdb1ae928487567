#include "anchorctx/data/dataset_tokenizer.h"

#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "anchorctx/core/error.h"

namespace anchorctx::data {
namespace {

// Text where tokenizers of different vocabularies cannot agree: words and subwords, numbers,
// runs of spaces and newlines, and characters outside ASCII.
constexpr std::string_view kProbeText =
    "The quick brown fox jumps over the lazy dog. Once upon a time, there was a little girl "
    "named Lily who loved 42 apples and 1234567 stars!\n\n  Indented    spaces\tand tabs\n"
    "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 -- "
    "\"quoted\" (parens) [brackets] {braces} don't we'll I'M";

std::string describe(const Tokenizer& t) {
  return fmt::format("{}, {} ids", t.kind(), t.vocab_size());
}

}  // namespace

bool same_token_ids(const Tokenizer& a, const Tokenizer& b) {
  return a.vocab_size() == b.vocab_size() && a.bos_id() == b.bos_id() && a.eos_id() == b.eos_id() &&
         a.encode(kProbeText) == b.encode(kProbeText);
}

void require_dataset_tokenizer(const Dataset& dataset, const Tokenizer& model,
                               std::string_view command, std::string_view model_source) {
  const std::string dataset_name = dataset.path().string();
  const auto refuse = [&](const std::string& packed_with) {
    fail(
        "{}: {} was packed with another tokenizer ({}) than {}'s ({}): its ids would be read as "
        "other tokens; pack the data with the model's tokenizer (pack --tokenizer {})",
        command, dataset_name, packed_with, model_source, describe(model), model_source);
  };
  // meta.json's tokenizer record and its strings are optional (Dataset::open checks their types
  // where present): without them, the vocabulary sizes are all there is to compare.
  const nlohmann::json& meta = dataset.meta();
  const nlohmann::json* recorded =
      meta.contains("tokenizer") && meta["tokenizer"].is_object() ? &meta["tokenizer"] : nullptr;
  const auto field = [&](const char* key) {
    return recorded != nullptr && recorded->contains(key) && (*recorded)[key].is_string()
               ? (*recorded)[key].get<std::string>()
               : std::string();
  };
  const std::string hash = field("content_hash"), spec = field("spec"), kind = field("kind");
  if (!hash.empty() && hash == model.content_hash()) return;
  std::unique_ptr<Tokenizer> packed;
  if (!spec.empty()) {
    try {
      packed = load_tokenizer(spec);
    } catch (const Error&) {
      packed = nullptr;  // moved or deleted since packing
    }
  }
  const bool same_file = packed != nullptr && !hash.empty() && packed->content_hash() == hash;
  if (same_file) {
    if (same_token_ids(*packed, model)) return;
    refuse(fmt::format("{}: {}", spec, describe(*packed)));
  }
  if (dataset.vocab_size() != model.vocab_size())
    refuse(fmt::format("{}{} ids", spec.empty() ? "" : spec + ": " + kind + ", ",
                       dataset.vocab_size()));
  const std::string why = spec.empty() || hash.empty() ? "meta.json does not identify it"
                          : packed == nullptr ? "its file (" + spec + ") can no longer be loaded"
                                              : "its file (" + spec + ") has changed since packing";
  std::fprintf(stderr, "%s",
               fmt::format("{}: warning: {} was packed with a tokenizer that may not be {}'s and "
                           "whose ids cannot be compared ({}); the vocabulary sizes agree ({})\n",
                           command, dataset_name, model_source, why, model.vocab_size())
                   .c_str());
}

}  // namespace anchorctx::data
