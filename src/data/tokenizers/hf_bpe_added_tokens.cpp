#include "data/tokenizers/hf_bpe_added_tokens.h"

#include <algorithm>
#include <cstring>

namespace anchorctx::data::hf_bpe {
namespace {

// The same tests as `tokenizers` (Rust regex, Unicode): \w at an edge, \s runs at an edge.
// Rust's \w is Alphabetic, marks, decimal digits, connector punctuation and Join_Control
// (UTS #18's word class); PCRE2's is letters, all numbers and '_' (a combining mark after a
// token, or a superscript digit, was judged the other way). Rust's \s is White_Space, which
// Regex makes of \s.
constexpr const char* kRustWord = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";
const Regex& ends_with_word() {
  static const Regex r(std::string(kRustWord) + R"(\z)");
  return r;
}
const Regex& starts_with_word() {
  static const Regex r(std::string("^") + kRustWord);
  return r;
}
const Regex& trailing_space() {
  static const Regex r(R"(\s*\z)");
  return r;
}
const Regex& leading_space() {
  static const Regex r(R"(^\s*)");
  return r;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<std::string> patterns,
                                     std::vector<AddedToken> tokens)
    : patterns_(std::move(patterns)), tokens_(std::move(tokens)) {
  for (int i = 0; i < static_cast<int>(patterns_.size()); ++i)
    if (!patterns_[i].empty())
      by_first_byte_[static_cast<unsigned char>(patterns_[i][0])].push_back(i);
  for (auto& list : by_first_byte_)
    std::stable_sort(list.begin(), list.end(),
                     [&](int a, int b) { return patterns_[a].size() > patterns_[b].size(); });
}

std::pair<std::size_t, int> AddedTokenMatcher::find(std::string_view text, std::size_t from) const {
  for (std::size_t pos = from; pos < text.size(); ++pos) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[pos])];
    for (const int i : candidates) {
      const std::string& p = patterns_[i];
      if (text.size() - pos >= p.size() && std::memcmp(text.data() + pos, p.data(), p.size()) == 0)
        return {pos, i};
    }
  }
  return {text.size(), -1};
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  std::size_t done = 0;    // end of the last emitted segment
  std::size_t search = 0;  // where the next match may start
  while (search < text.size()) {
    const auto [pos, index] = find(text, search);
    if (index < 0) break;
    const AddedToken& token = tokens_[index];
    std::size_t start = pos, stop = pos + patterns_[index].size();
    search = stop;
    if (token.single_word) {
      const bool word_before = start > 0 && ends_with_word().matches(text.substr(0, start));
      const bool word_after = stop < text.size() && starts_with_word().matches(text.substr(stop));
      if (word_before || word_after) continue;  // the match is consumed, as in Aho-Corasick
    }
    if (token.lstrip) {
      std::vector<std::pair<std::size_t, std::size_t>> m;
      trailing_space().find_all(text.substr(0, start), m);
      std::size_t new_start = start;
      for (const auto& [s, e] : m)
        if (e == start) new_start = std::min(new_start, s);
      start = std::max(new_start, done);
    }
    if (token.rstrip) {
      std::vector<std::pair<std::size_t, std::size_t>> m;
      leading_space().find_all(text.substr(stop), m);
      if (!m.empty() && m.front().first == 0) stop += m.front().second;
    }
    if (start > done) out.push_back({done, start, std::nullopt});
    out.push_back({start, stop, token.id});
    done = stop;
    search = std::max(search, stop);
  }
  if (done < text.size()) out.push_back({done, text.size(), std::nullopt});
}

}  // namespace anchorctx::data::hf_bpe
