// StreamEncoder: a text of any length to token ids in bounded memory, with the ids of the whole.
//
// Text arrives in blocks (feed); whenever the buffer holds piece_bytes or more, it is cut at
// the last safe cut the tokenizer finds (Tokenizer::stream_cut) and the piece before it is
// encoded and handed on. Memory: the buffer (piece_bytes plus one fed block, as long as the
// text has a safe cut every piece_bytes) and one piece's ids and tokenizer working memory,
// whatever the text's length. A tokenizer without safe cuts (or text without any) keeps the
// whole text buffered, which is what encoding it whole would cost.
//
// Safe cuts per kind (each proved in its tokenizer's stream_cut, tested against whole-text
// encoding in tests/data/stream_encoder_test.cpp): byte, every byte; llama2.c, between two
// ASCII bytes that no vocabulary piece holds side by side (no merge can cross them); SentencePiece,
// a single space between two printable ASCII characters when the model adds a dummy prefix and
// no piece holds a printable ASCII character followed by its whitespace symbol (the next piece
// drops that space and the dummy prefix puts it back); HuggingFace BPE, before a space that
// follows a printable ASCII character, when the pre-tokenizer is proved to split there
// (ByteLevel or Split with the GPT-2, LLaMA-3 or Qwen2 regex, Metaspace with split), the
// normalizer is none or NFC, and no added token holds a space (none at all otherwise: a
// Prepend/Replace normalizer, Metaspace without split, other regexes: whole texts), and
// anywhere for a byte-wise model (the byte tokenizer's own tokenizer.json).
//
// A text with no safe cut for a long stretch (CJK without spaces, a run of digits, one word
// of a megabyte) is buffered until its next cut or its end: the ids stay exact, and memory
// grows with the longest such stretch (and its tokenizer working memory), not with the text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {

// Receives each piece of text and whether it starts the text (encode it with encode) or
// continues it from a safe cut (encode_continued); the view is valid during the call only.
using TextPieceSink = std::function<void(std::string_view piece, bool starts_text)>;

// The cutting half of StreamEncoder, without the encoding: pieces of at most about
// piece_bytes, cut at the tokenizer's safe cuts, handed on in order. `anchorctx pack` cuts in
// its reading thread and encodes the pieces on its worker threads.
class StreamCutter {
 public:
  static constexpr std::size_t kDefaultPieceBytes = std::size_t{1} << 20;

  StreamCutter(const Tokenizer& tokenizer, TextPieceSink sink,
               std::size_t piece_bytes = kDefaultPieceBytes);

  // Appends text (any split, also inside a UTF-8 character) and emits the complete pieces.
  void feed(std::string_view text);
  // Emits the rest (nothing for an empty text). The cutter can then take a new text.
  void finish();

  // The largest number of bytes buffered so far (for tests of the memory bound).
  std::size_t peak_buffered() const { return peak_buffered_; }

 private:
  void emit(std::string_view piece);

  const Tokenizer& tokenizer_;
  TextPieceSink sink_;
  std::size_t piece_bytes_;
  std::string buffer_;
  std::size_t searched_ = 0;  // no safe cut before this offset of buffer_ (already searched)
  bool first_ = true;         // the next piece starts the text
  std::size_t peak_buffered_ = 0;
};

// Receives each piece's ids, in order; the span is valid during the call only.
using IdSink = std::function<void(std::span<const std::int32_t> ids)>;

class StreamEncoder {
 public:
  static constexpr std::size_t kDefaultPieceBytes = StreamCutter::kDefaultPieceBytes;

  StreamEncoder(const Tokenizer& tokenizer, IdSink sink,
                std::size_t piece_bytes = kDefaultPieceBytes);

  // Appends text (any split, also inside a UTF-8 character) and emits the complete pieces.
  void feed(std::string_view text) { cutter_.feed(text); }
  // Emits the rest. The encoder can then take a new text (feed starts it afresh).
  void finish() { cutter_.finish(); }

  // The largest number of bytes buffered so far (for tests of the memory bound).
  std::size_t peak_buffered() const { return cutter_.peak_buffered(); }

 private:
  StreamCutter cutter_;
};

// The ids of `text` encoded piece by piece (the same ids as tokenizer.encode(text)); memory
// of one piece instead of the whole text's tokenizer working memory.
std::vector<std::int32_t> encode_in_pieces(
    const Tokenizer& tokenizer, std::string_view text,
    std::size_t piece_bytes = StreamEncoder::kDefaultPieceBytes);

}  // namespace anchorctx::data
