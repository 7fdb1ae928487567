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
  const nlohmann::json& recorded = dataset.meta().at("tokenizer");
  const std::string hash = recorded.at("content_hash").get<std::string>();
  if (hash == model.content_hash()) return;
  const std::string spec = recorded.at("spec").get<std::string>();
  const std::string kind = recorded.at("kind").get<std::string>();
  const std::string dataset_name = dataset.path().string();
  std::unique_ptr<Tokenizer> packed;
  try {
    packed = load_tokenizer(spec);
  } catch (const Error&) {
    packed = nullptr;  // moved or deleted since packing
  }
  if (packed != nullptr && packed->content_hash() == hash) {
    if (same_token_ids(*packed, model)) return;
    fail(
        "{}: {} was packed with another tokenizer ({}: {}) than {}'s ({}): its ids would be read "
        "as other tokens; pack the data with the model's tokenizer (pack --tokenizer {})",
        command, dataset_name, spec, describe(*packed), model_source, describe(model),
        model_source);
  }
  if (dataset.vocab_size() != model.vocab_size())
    fail(
        "{}: {} was packed with another tokenizer ({}: {}, {} ids) than {}'s ({}): its ids would "
        "be read as other tokens; pack the data with the model's tokenizer (pack --tokenizer {})",
        command, dataset_name, spec, kind, dataset.vocab_size(), model_source, describe(model),
        model_source);
  std::fprintf(stderr, "%s",
               fmt::format("{}: warning: {} was packed with a tokenizer ({}, content hash {}) that "
                           "is not {}'s and can no longer be loaded to compare their ids; the "
                           "vocabulary sizes agree ({})\n",
                           command, dataset_name, spec, hash, model_source, model.vocab_size())
                   .c_str());
}

}  // namespace anchorctx::data
