// Decoders of tokenizer.json: token strings back to text, as `tokenizers`' decode_chain, each
// step turning a list of strings into another. Supported: ByteLevel, Metaspace, Replace
// (String pattern), ByteFallback, Fuse, Strip, Sequence. Without a decoder the tokens are
// joined with spaces, as `tokenizers` does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anchorctx::data::hf_bpe {

class DecoderStep {
 public:
  virtual ~DecoderStep() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

class Decoder {
 public:
  // From the "decoder" object (null: join with spaces). Throws anchorctx::Error naming an
  // unsupported type.
  static Decoder from_json(const nlohmann::json& spec);

  // The text of `tokens`; always valid UTF-8 when a ByteLevel or ByteFallback step is present
  // (invalid bytes become U+FFFD as in `tokenizers`).
  std::string decode(std::vector<std::string> tokens) const;

 private:
  std::vector<std::shared_ptr<const DecoderStep>> steps_;
  bool present_ = false;
};

}  // namespace anchorctx::data::hf_bpe
