// A compiled PCRE2 pattern (UTF + UCP, JIT when available) for the tokenizer.json regexes
// (which `tokenizers` runs with Oniguruma). Invalid UTF-8 in the subject is allowed
// (PCRE2_MATCH_INVALID_UTF): an invalid byte never matches any pattern item, so it acts as a
// barrier, like the end of the subject, and ends up in the text between matches.
//
// PCRE2's \s under UCP is its \h and \v lists, which still hold U+180E (MONGOLIAN VOWEL
// SEPARATOR, whitespace before Unicode 6.3); Oniguruma's \s and Rust regex's are Unicode
// White_Space, without it. So \s and \S are compiled as \p{White_Space} and \P{White_Space}
// (translate_pattern), in and out of character classes; Oniguruma's \h (a hex digit) and \v
// (the vertical tab) likewise.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace anchorctx::data::hf_bpe {

// `pattern` with every \s and \S escape (not "\\s", nor inside \Q...\E) replaced by
// \p{White_Space} / \P{White_Space}. `origin`, when given, receives for each byte of the result
// the offset of the pattern's byte it came from, and then the pattern's size.
std::string translate_pattern(std::string_view pattern, std::vector<std::size_t>* origin = nullptr);

class Regex {
 public:
  // Throws anchorctx::Error with PCRE2's message and offset on a bad pattern.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The non-empty matches of the pattern in `text`, left to right, as [start, end) byte
  // offsets; after an empty match the search moves one character on.
  void find_all(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

  // Whether the pattern matches somewhere in `text`.
  bool matches(std::string_view text) const;

  // A pattern matching `literal` exactly.
  static std::string escape(std::string_view literal);

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
  std::string pattern_;  // for the messages of a failed match
};

}  // namespace anchorctx::data::hf_bpe
