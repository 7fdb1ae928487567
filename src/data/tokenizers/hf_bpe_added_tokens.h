// The added tokens of a tokenizer.json (special or not): found in the text before anything
// else, leftmost first and longest at that position (as `tokenizers`' Aho-Corasick with
// LeftmostLongest), each becoming its own id.
//
// Options, as `tokenizers` applies them: single_word (a match touching a word character,
// Rust regex's Unicode \w, on either side is skipped), lstrip / rstrip (the match swallows the
// whitespace before / after it), normalized (the token is looked for in the normalized text, its
// content normalized too; otherwise in the raw text before normalization).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizers/hf_bpe_regex.h"

namespace anchorctx::data::hf_bpe {

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// One part of the text: an added token's id, or text for the normalizer/pre-tokenizer.
struct Segment {
  std::size_t begin, end;
  std::optional<std::int32_t> id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is what to look for (the content, normalized for the normalized pass).
  AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens);

  bool empty() const { return patterns_.empty(); }
  // Cuts `text` into segments covering it, in order.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // The leftmost-longest match at or after `from`: (position, pattern index), or index -1.
  std::pair<std::size_t, int> find(std::string_view text, std::size_t from) const;

  std::vector<std::string> patterns_;
  std::vector<AddedToken> tokens_;
  // Candidate patterns by first byte, longest first.
  std::vector<std::vector<int>> by_first_byte_ = std::vector<std::vector<int>>(256);
};

}  // namespace anchorctx::data::hf_bpe
