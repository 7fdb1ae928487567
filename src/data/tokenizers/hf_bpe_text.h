// Text helpers shared by the HuggingFace BPE pieces: strict UTF-8 scanning (invalid bytes are
// units of their own, never an error), Rust's lossy UTF-8 conversion, and the GPT-2 byte-level
// alphabet (each byte shown as a printable code point).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "anchorctx/core/utf8.h"

namespace anchorctx::data::hf_bpe {

// The length of one "unit" at text[i]: a well-formed character, or a single invalid byte.
inline std::size_t utf8_unit_length(std::string_view text, std::size_t i) {
  // core::utf8_sequence_length: strict (no overlong forms, surrogates or code points above
  // U+10FFFF), the rules of Python's strict decoder; 0 where the bytes are not a character.
  const std::size_t n = core::utf8_sequence_length(text, i);
  return n == 0 ? 1 : n;
}

using core::utf8_lossy;  // Rust's String::from_utf8_lossy, as the `tokenizers` decoders

// A Metaspace replacement (pre-tokenizer or decoder, named by `where`): `tokenizers` reads it as
// one character (a Rust char), so anything else, the empty string above all (every search for
// it matches where it started: an endless loop), is refused. Throws anchorctx::Error.
std::string one_character(const std::string& text, std::string_view where);

// Appends the UTF-8 encoding of `code_point` to `out`.
void append_utf8(std::string& out, char32_t code_point);

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for
// U+0100 upwards in byte order. byte_to_char[b] is the UTF-8 text of byte b's stand-in.
struct ByteLevelAlphabet {
  std::array<std::string, 256> byte_to_char;
  // Inverse: the byte a code point stands for, or -1 (code points < 324 are enough).
  std::array<int, 324> char_to_byte;
};
const ByteLevelAlphabet& byte_level_alphabet();

// `text` with each byte replaced by its stand-in.
std::string byte_level_encode(std::string_view text);
// The bytes of a byte-level token, or false when a code point is not in the alphabet.
bool byte_level_decode(std::string_view token, std::string& bytes);

}  // namespace anchorctx::data::hf_bpe
