#include "data/tokenizers/hf_bpe_normalizer.h"

#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <nlohmann/json.hpp>

#include "anchorctx/core/error.h"
#include "anchorctx/core/utf8.h"
#include "data/tokenizers/hf_bpe_regex.h"

namespace anchorctx::data::hf_bpe {
namespace {

using json = nlohmann::json;

class PrependStep final : public NormalizerStep {
 public:
  explicit PrependStep(std::string prefix) : prefix_(std::move(prefix)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);  // `tokenizers` leaves empty text alone
  }

 private:
  std::string prefix_;
};

class ReplaceLiteralStep final : public NormalizerStep {
 public:
  ReplaceLiteralStep(std::string from, std::string to)
      : from_(std::move(from)), to_(std::move(to)) {}
  void apply(std::string& text) const override {
    if (from_.empty() || text.find(from_) == std::string::npos) return;
    std::string out;
    out.reserve(text.size() + text.size() / 4);
    std::size_t pos = 0;
    for (std::size_t hit = text.find(from_); hit != std::string::npos;
         hit = text.find(from_, pos)) {
      out.append(text, pos, hit - pos);
      out.append(to_);
      pos = hit + from_.size();
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }

 private:
  std::string from_, to_;
};

class ReplaceRegexStep final : public NormalizerStep {
 public:
  ReplaceRegexStep(const std::string& pattern, std::string to)
      : regex_(pattern), to_(std::move(to)) {}
  void apply(std::string& text) const override {
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    regex_.find_all(text, matches);
    if (matches.empty()) return;
    std::string out;
    std::size_t pos = 0;
    for (const auto& [s, e] : matches) {
      out.append(text, pos, s - pos);
      out.append(to_);
      pos = e;
    }
    out.append(text, pos, std::string::npos);
    text = std::move(out);
  }

 private:
  Regex regex_;
  std::string to_;
};

// Unicode NFC through ICU. In text that is not valid UTF-8 each valid stretch is normalized
// on its own and the bad bytes are kept as they are (ICU would turn them into U+FFFD, and the
// byte-fallback / byte-level steps after this one can represent them exactly); so the result
// at any place depends only on the stretch around it, which long texts cut into pieces need
// (`tokenizers` itself takes valid UTF-8 only). Already-NFC text, nearly all text, costs one
// quick check.
class NfcStep final : public NormalizerStep {
 public:
  NfcStep() {
    UErrorCode status = U_ZERO_ERROR;
    nfc_ = icu::Normalizer2::getNFCInstance(status);
    require(U_SUCCESS(status) && nfc_ != nullptr, "normalizer NFC: ICU has no NFC data ({})",
            u_errorName(status));
  }
  void apply(std::string& text) const override {
    if (core::is_valid_utf8(text)) {
      normalize_valid(text);
      return;
    }
    std::string out, run;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t len = core::utf8_sequence_length(text, i);
      if (len > 0) {
        run.append(text, i, len);
        i += len;
        continue;
      }
      normalize_valid(run);
      out += run;
      run.clear();
      out.push_back(text[i++]);
    }
    normalize_valid(run);
    out += run;
    text = std::move(out);
  }
  bool is_nfc() const override { return true; }

 private:
  void normalize_valid(std::string& text) const {
    if (text.empty()) return;
    const icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
    UErrorCode status = U_ZERO_ERROR;
    if (nfc_->quickCheck(u, status) == UNORM_YES && U_SUCCESS(status)) return;
    status = U_ZERO_ERROR;
    const icu::UnicodeString normalized = nfc_->normalize(u, status);
    if (U_FAILURE(status)) return;
    text.clear();
    normalized.toUTF8String(text);
  }

 private:
  const icu::Normalizer2* nfc_ = nullptr;
};

void add_steps(const json& spec, std::vector<std::shared_ptr<const NormalizerStep>>& steps) {
  const std::string type = spec.value("type", "");
  if (type == "Sequence") {
    for (const json& child : spec.at("normalizers"))
      add_steps(child, steps);
  } else if (type == "Prepend") {
    steps.push_back(std::make_shared<PrependStep>(spec.at("prepend").get<std::string>()));
  } else if (type == "Replace") {
    const json& pattern = spec.at("pattern");
    std::string content = spec.at("content");
    if (pattern.contains("String"))
      steps.push_back(std::make_shared<ReplaceLiteralStep>(pattern.at("String"), content));
    else if (pattern.contains("Regex"))
      steps.push_back(std::make_shared<ReplaceRegexStep>(pattern.at("Regex"), content));
    else
      fail("normalizer Replace: pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}");
  } else if (type == "NFC") {
    steps.push_back(std::make_shared<NfcStep>());
  } else {
    fail("normalizer type '{}' is not supported (supported: Sequence, Prepend, Replace, NFC)",
         type);
  }
}

}  // namespace

Normalizer Normalizer::from_json(const json& spec) {
  Normalizer n;
  if (!spec.is_null()) add_steps(spec, n.steps_);
  return n;
}

}  // namespace anchorctx::data::hf_bpe
