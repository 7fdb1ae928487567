// The built-in corpus of `anchorctx demo` (and the default input of `rope-drift`): documents
// generated here, deterministic from a seed, so the main job needs no download.
//
// Two kinds, mixed:
//   - natural-language-like prose: sentences from a small grammar over a few hundred English
//     words (subjects, verbs, objects, adjectives, connectives) with word frequencies skewed as in
//     real text, paragraphs, punctuation; a byte-level model learns spelling and short-range
//     structure from it quickly;
//   - key-value retrieval documents: "key <k> is <v>." lines with random keys and values, then
//     questions "what is key <k>? <v>" about keys listed earlier, so predicting the answer needs
//     attention back across the document (the long-context skill AnchorAttention trains).
// Lengths vary (lognormal in characters, clipped to [min_chars, max_chars]).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::data {

struct BuiltinCorpusOptions {
  std::uint64_t seed = 1234;
  std::int64_t documents = 2000;
  double retrieval_fraction = 0.3;  // share of key-value documents
  std::int64_t median_chars = 1500;
  std::int64_t min_chars = 64;
  std::int64_t max_chars = 12000;
};

// The documents, as UTF-8 (ASCII) text. Same options, same bytes on every platform (the
// generator is a fixed xorshift/splitmix, not std:: distributions).
// Document i depends on the seed and i only, so fewer documents give a prefix of more. Each is
// built from whole sentences or lines while they fit its drawn length, and from more until it
// reaches min_chars (cut at max_chars should that overshoot: keep max_chars - min_chars above
// ~100 so that it never does). Retrieval documents start with "key " and end with a newline.
// Throws anchorctx::Error when documents < 0, retrieval_fraction is outside [0, 1],
// median_chars < 1, or not 1 <= min_chars <= max_chars.
std::vector<std::string> builtin_corpus(const BuiltinCorpusOptions& options);

// The words retrieval documents store as values (eval's `kv` template asks for them).
std::span<const std::string_view> builtin_retrieval_values();

}  // namespace anchorctx::data
