#include "data/tokenizers/hf_bpe_regex.h"

#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "anchorctx/core/error.h"
#include "data/tokenizers/hf_bpe_text.h"

namespace anchorctx::data::hf_bpe {
namespace {

// Per-thread match state: match data for one pair of offsets, and a JIT stack larger than the
// default 32 KiB so that long whitespace runs cannot exhaust it.
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

std::string translate_pattern(std::string_view pattern, std::vector<std::size_t>* origin) {
  std::string out;
  out.reserve(pattern.size() + 32);
  const auto emit = [&](std::string_view piece, std::size_t from) {
    out += piece;
    if (origin) origin->insert(origin->end(), piece.size(), from);
  };
  std::size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      emit(pattern.substr(i, 1), i);
      ++i;
      continue;
    }
    const char next = pattern[i + 1];
    if (next == 's' || next == 'S') {
      emit(next == 's' ? "\\p{White_Space}" : "\\P{White_Space}", i);
      i += 2;
    } else if (next == 'h' || next == 'H') {
      // Oniguruma's (Ruby syntax) \h is a hexadecimal digit, PCRE2's horizontal white space.
      emit(next == 'h' ? "\\p{AHex}" : "\\P{AHex}", i);
      i += 2;
    } else if (next == 'v') {
      // Oniguruma's \v is the vertical tab alone, PCRE2's any vertical white space.
      emit("\\x{0B}", i);
      i += 2;
    } else if (next == 'Q') {
      // Quoted up to "\E" (or the end): nothing inside is an escape.
      const std::size_t end = pattern.find("\\E", i + 2);
      const std::size_t stop = end == std::string_view::npos ? pattern.size() : end + 2;
      for (; i < stop; ++i)
        emit(pattern.substr(i, 1), i);
    } else {
      // Any other escape, kept whole: "\\s" is a backslash and an 's', "\cX" a control
      // character whatever X is.
      const std::size_t length = next == 'c' && i + 2 < pattern.size() ? 3 : 2;
      for (std::size_t k = 0; k < length; ++k, ++i)
        emit(pattern.substr(i, 1), i);
    }
  }
  if (origin) origin->push_back(pattern.size());
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  std::vector<std::size_t> origin;
  const std::string translated = translate_pattern(pattern, &origin);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  if (code_ == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    // The offset in the pattern as written, not in its translation.
    fail("regex '{}': {} at offset {}", pattern, reinterpret_cast<const char*>(message),
         origin[std::min<std::size_t>(offset, origin.size() - 1)]);
  }
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  pcre2_code_free(code_);
}

void Regex::find_all(std::string_view text,
                     std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  MatchState& state = match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t start = 0;
  while (start <= text.size()) {
    const int rc =
        jit_ ? pcre2_jit_match(code_, subject, text.size(), start, 0, state.data, state.context)
             : pcre2_match(code_, subject, text.size(), start, 0, state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      // PCRE2's match limit: a pattern that backtracks without end on this text.
      fail("tokenizer.json regex '{}': matching a piece of {} bytes failed: {}", pattern_,
           text.size(), reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const std::size_t s = ovector[0], e = ovector[1];
    if (e > s) {
      out.emplace_back(s, e);
      start = e;
    } else {
      if (s >= text.size()) break;
      start = s + utf8_unit_length(text, s);
    }
  }
}

bool Regex::matches(std::string_view text) const {
  MatchState& state = match_state();
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, 0,
                             state.data, state.context);
  return rc >= 0;
}

std::string Regex::escape(std::string_view literal) {
  // \Q...\E quotes everything except a literal "\E", which is spliced out of the quote.
  std::string out = "\\Q";
  for (std::size_t i = 0; i < literal.size(); ++i) {
    if (literal.substr(i, 2) == "\\E") {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out.push_back(literal[i]);
    }
  }
  out += "\\E";
  return out;
}

}  // namespace anchorctx::data::hf_bpe
