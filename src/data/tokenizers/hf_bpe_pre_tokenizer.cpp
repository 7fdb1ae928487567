#include "data/tokenizers/hf_bpe_pre_tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "data/tokenizers/hf_bpe_regex.h"
#include "data/tokenizers/hf_bpe_text.h"

namespace anchorctx::data::hf_bpe {
namespace {

using json = nlohmann::json;
using Span = std::pair<std::size_t, std::size_t>;

// GPT-2's pattern, which ByteLevel applies when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The split patterns of LLaMA-3 and of Qwen2 (which takes digits one at a time).
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Why these three patterns split before a space S at k that follows a printable ASCII
// character c at k - 1, in any text, and give the same matches on either side as in the whole:
//  - no alternative matches a string holding c followed by a space: letters (\p{L}+, with at
//    most one leading character before them), digits (\p{N}...), other characters
//    ([^\s\p{L}\p{N}]+, then only \r or \n) and the contractions never take a space after
//    their first character, and the whitespace alternatives take no c. So the match holding c
//    ends at k, and matching resumes at k;
//  - none has a look-behind, an anchor or \b, so the matches from k on are those of the text
//    that starts at k; the one look-ahead, (?!\S), sits after whitespace only, so no match
//    ending at k (after c) looks past it: the matches before k are those of the text ending at k.
// An invalid UTF-8 byte matches nothing, but c and S are ASCII.
bool proved_to_split_before_spaces(const std::string& pattern) {
  return pattern == kGpt2Pattern || pattern == kLlama3Pattern || pattern == kQwen2Pattern;
}

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  fail("pre_tokenizer Split: unknown behavior '{}'", name);
}

// Cuts `text` by the matches of `regex` and joins the parts per `behavior`, as
// `tokenizers`' NormalizedString::split; calls emit for each non-empty piece.
void split_by(const Regex& regex, Behavior behavior, bool invert, std::string_view text,
              bool at_start, const PieceSink& emit) {
  thread_local std::vector<Span> matches;
  thread_local std::vector<std::pair<Span, bool>> parts;
  matches.clear();
  regex.find_all(text, matches);
  // Alternate non-matches and matches over the whole text.
  parts.clear();
  std::size_t prev = 0;
  for (const Span& m : matches) {
    if (m.first > prev) parts.push_back({{prev, m.first}, invert});
    parts.push_back({m, !invert});
    prev = m.second;
  }
  if (prev < text.size()) parts.push_back({{prev, text.size()}, invert});

  // Joined pieces: (span, keep).
  thread_local std::vector<Span> out;
  out.clear();
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& [span, is_match] : parts)
        out.push_back(span);
      break;
    case Behavior::kRemoved:
      for (const auto& [span, is_match] : parts)
        if (!is_match) out.push_back(span);
      break;
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const auto& [span, is_match] : parts) {
        if (is_match && !previous_match && !out.empty())
          out.back().second = span.second;
        else
          out.push_back(span);
        previous_match = is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      // Walk right to left: a match joins the piece after it.
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        const auto& [span, is_match] = *it;
        if (is_match && !previous_match && !out.empty())
          out.back().first = span.first;
        else
          out.push_back(span);
        previous_match = is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case Behavior::kContiguous: {
      bool previous_match = false;
      bool first = true;
      for (const auto& [span, is_match] : parts) {
        if (!first && is_match == previous_match)
          out.back().second = span.second;
        else
          out.push_back(span);
        previous_match = is_match;
        first = false;
      }
      break;
    }
  }
  // `emit` may re-enter split_by (a Sequence of Splits): copy the spans off the shared buffer.
  const std::vector<Span> pieces = out;
  for (const Span& s : pieces)
    if (s.second > s.first)
      emit(text.substr(s.first, s.second - s.first), at_start && s.first == 0);
}

class SplitStep final : public PreTokenizerStep {
 public:
  SplitStep(const std::string& pattern, Behavior behavior, bool invert,
            SpaceCut cut = SpaceCut::unknown)
      : regex_(pattern), behavior_(behavior), invert_(invert), cut_(cut) {
    // Isolated keeps every match and every gap as its own piece: a match boundary at k is a
    // piece boundary.
    if (behavior == Behavior::kIsolated && !invert && proved_to_split_before_spaces(pattern))
      cut_ = SpaceCut::splits;
  }
  void run(std::string_view piece, bool at_start, const PieceSink& emit) const override {
    split_by(regex_, behavior_, invert_, piece, at_start, emit);
  }
  SpaceCut space_cut() const override { return cut_; }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
  SpaceCut cut_;
};

class ByteLevelStep final : public PreTokenizerStep {
 public:
  ByteLevelStep(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<Regex>(kGpt2Pattern);
  }
  void run(std::string_view piece, bool at_start, const PieceSink& emit) const override {
    std::string prefixed;
    if (add_prefix_space_ && !piece.starts_with(' ')) {
      prefixed.reserve(piece.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(piece);
      piece = prefixed;
    }
    if (regex_)
      split_by(*regex_, Behavior::kIsolated, false, piece, at_start, emit);
    else
      emit(piece, at_start);
  }
  // With its regex (GPT-2's, Isolated) it splits there. The prefix space is added only to a
  // text that does not start with one: the text after the cut starts with the space.
  SpaceCut space_cut() const override { return regex_ ? SpaceCut::splits : SpaceCut::unknown; }
  bool adds_prefix_space() const { return add_prefix_space_; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class MetaspaceStep final : public PreTokenizerStep {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  MetaspaceStep(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void run(std::string_view piece, bool at_start, const PieceSink& emit) const override {
    std::string text;
    text.reserve(piece.size() + replacement_.size());
    for (const char c : piece) {
      if (c == ' ')
        text.append(replacement_);
      else
        text.push_back(c);
    }
    const bool starts = std::string_view(text).starts_with(replacement_);
    if (!starts && (prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && at_start)))
      text.insert(0, replacement_);
    if (!split_) {
      emit(text, at_start);
      return;
    }
    // Split before each replacement character, which stays with the text after it.
    std::size_t begin = 0;
    for (std::size_t pos = text.find(replacement_, 1); pos != std::string::npos;
         pos = text.find(replacement_, pos + replacement_.size())) {
      if (pos > begin)
        emit(std::string_view(text).substr(begin, pos - begin), at_start && begin == 0);
      begin = pos;
    }
    if (begin < text.size()) emit(std::string_view(text).substr(begin), at_start && begin == 0);
  }

 private:
  // With split, the space becomes the replacement and a piece starts there; the text after
  // the cut then starts with the replacement, so nothing is prepended to it.
  SpaceCut space_cut() const override { return split_ ? SpaceCut::splits : SpaceCut::unknown; }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

std::string split_pattern(const json& pattern) {
  if (pattern.contains("Regex")) return pattern.at("Regex").get<std::string>();
  if (pattern.contains("String")) return Regex::escape(pattern.at("String").get<std::string>());
  fail("pre_tokenizer Split: pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}");
}

void add_steps(const json& spec, std::vector<std::shared_ptr<const PreTokenizerStep>>& steps,
               bool& byte_level) {
  const std::string type = spec.value("type", "");
  if (byte_level)
    fail("pre_tokenizer: ByteLevel must be the last step (found '{}' after it)", type);
  if (type == "Sequence") {
    for (const json& child : spec.at("pretokenizers"))
      add_steps(child, steps, byte_level);
  } else if (type == "Split") {
    steps.push_back(std::make_shared<SplitStep>(split_pattern(spec.at("pattern")),
                                                parse_behavior(spec.at("behavior")),
                                                spec.value("invert", false)));
  } else if (type == "ByteLevel") {
    steps.push_back(std::make_shared<ByteLevelStep>(spec.value("add_prefix_space", true),
                                                    spec.value("use_regex", true)));
    byte_level = true;
  } else if (type == "Metaspace") {
    auto prepend = MetaspaceStep::Prepend::kAlways;
    if (spec.contains("prepend_scheme")) {
      const std::string scheme = spec.at("prepend_scheme");
      if (scheme == "first")
        prepend = MetaspaceStep::Prepend::kFirst;
      else if (scheme == "never")
        prepend = MetaspaceStep::Prepend::kNever;
      else if (scheme != "always")
        fail("pre_tokenizer Metaspace: unknown prepend_scheme '{}'", scheme);
    } else if (!spec.value("add_prefix_space", true)) {
      prepend = MetaspaceStep::Prepend::kNever;
    }
    steps.push_back(std::make_shared<MetaspaceStep>(
        one_character(spec.value("replacement", "\xE2\x96\x81"), "pre_tokenizer Metaspace"),
        prepend, spec.value("split", true)));
  } else if (type == "Digits") {
    const char* pattern = spec.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)";
    // Digit runs, without context: they never hold c's space, so they split the same way.
    steps.push_back(
        std::make_shared<SplitStep>(pattern, Behavior::kIsolated, false, SpaceCut::pure_split));
  } else {
    fail(
        "pre_tokenizer type '{}' is not supported (supported: Sequence, Split, ByteLevel, "
        "Metaspace, Digits)",
        type);
  }
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const json& spec) {
  PreTokenizer p;
  if (!spec.is_null()) add_steps(spec, p.steps_, p.byte_level_);
  return p;
}

bool PreTokenizer::plain_byte_level() const {
  if (steps_.size() != 1) return false;
  const auto* step = dynamic_cast<const ByteLevelStep*>(steps_[0].get());
  return step != nullptr && !step->adds_prefix_space();
}

bool PreTokenizer::splits_before_spaces() const {
  for (const auto& step : steps_) {
    if (step->space_cut() == SpaceCut::splits) return true;
    if (step->space_cut() != SpaceCut::pure_split) return false;
  }
  return false;
}

void PreTokenizer::run(std::string_view text, bool at_start, const PieceSink& emit) const {
  if (!text.empty()) run_from(0, text, at_start, emit);
}

void PreTokenizer::run_from(std::size_t step, std::string_view piece, bool at_start,
                            const PieceSink& emit) const {
  if (step == steps_.size()) {
    emit(piece, at_start);
    return;
  }
  steps_[step]->run(piece, at_start, [&](std::string_view sub, bool sub_start) {
    run_from(step + 1, sub, sub_start, emit);
  });
}

}  // namespace anchorctx::data::hf_bpe
