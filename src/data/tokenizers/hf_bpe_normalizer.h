// Normalizers of tokenizer.json, applied to the text between added tokens before
// pre-tokenization. Supported: Sequence, Prepend, Replace (String or Regex pattern), and NFC
// (Qwen2's) through ICU; text that is not valid UTF-8 is left as it is by NFC.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anchorctx::data::hf_bpe {

class NormalizerStep {
 public:
  virtual ~NormalizerStep() = default;
  virtual void apply(std::string& text) const = 0;
  // Whether the step is NFC (which never changes text across a cut between two ASCII
  // characters: an ASCII character is a starter that composes with nothing before it).
  virtual bool is_nfc() const { return false; }
};

class Normalizer {
 public:
  // From the "normalizer" object (null gives the identity). Throws anchorctx::Error naming an
  // unsupported type.
  static Normalizer from_json(const nlohmann::json& spec);

  bool empty() const { return steps_.empty(); }
  bool only_nfc() const {
    for (const auto& step : steps_)
      if (!step->is_nfc()) return false;
    return true;
  }
  void apply(std::string& text) const {
    for (const auto& step : steps_)
      step->apply(text);
  }

 private:
  std::vector<std::shared_ptr<const NormalizerStep>> steps_;
};

}  // namespace anchorctx::data::hf_bpe
