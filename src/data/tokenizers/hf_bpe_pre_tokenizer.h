// Pre-tokenizers of tokenizer.json: split normalized text into the words the BPE model sees.
// Supported: Split (String or Regex pattern, all five behaviours, invert), ByteLevel
// (add_prefix_space, use_regex with GPT-2's pattern; the byte mapping itself is left to the
// model, which takes raw bytes), Metaspace (replacement, prepend_scheme, split), Digits and
// Sequence of these.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anchorctx::data::hf_bpe {

// Receives each piece and whether it starts at offset 0 of the whole input (Metaspace's
// prepend_scheme "first" needs it). The view is only valid during the call.
using PieceSink = std::function<void(std::string_view piece, bool at_start)>;

// What a step does at a space that follows a printable ASCII character (the cut
// HfBpeTokenizer::stream_cut makes), for any text around it (proofs in the .cpp):
enum class SpaceCut {
  splits,      // it always splits there, and its pieces on each side are those of the whole
  pure_split,  // it only splits elsewhere, by a pattern without context (Digits)
  unknown,     // nothing is proved
};

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  virtual void run(std::string_view piece, bool at_start, const PieceSink& emit) const = 0;
  virtual SpaceCut space_cut() const = 0;
};

class PreTokenizer {
 public:
  // From the "pre_tokenizer" object (null gives the identity). Throws anchorctx::Error naming
  // the unsupported type or option.
  static PreTokenizer from_json(const nlohmann::json& spec);

  // Splits `text` into pieces (empty pieces are dropped, as in `tokenizers`).
  void run(std::string_view text, bool at_start, const PieceSink& emit) const;

  // Whether every text is split before each space that follows a printable ASCII character,
  // with the pieces on either side those of the whole: a step that splits there (SpaceCut::
  // splits) comes before any step other than Digits. What follows it sees the same pieces.
  bool splits_before_spaces() const;

  // Whether it is one ByteLevel step without a prefix space: every text is then given to the
  // model as it is (one word with use_regex false, its regex's words otherwise).
  bool plain_byte_level() const;

  // Whether the sequence ends with ByteLevel: the model then takes raw bytes.
  bool byte_level() const { return byte_level_; }

 private:
  void run_from(std::size_t step, std::string_view piece, bool at_start,
                const PieceSink& emit) const;
  std::vector<std::shared_ptr<const PreTokenizerStep>> steps_;
  bool byte_level_ = false;
};

}  // namespace anchorctx::data::hf_bpe
