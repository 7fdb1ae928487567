#include "data/tokenizers/hf_bpe_text.h"

#include "anchorctx/core/error.h"

namespace anchorctx::data::hf_bpe {
namespace {

ByteLevelAlphabet make_alphabet() {
  ByteLevelAlphabet a;
  a.char_to_byte.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const int cp = printable ? b : next++;
    a.byte_to_char[b].clear();
    append_utf8(a.byte_to_char[b], static_cast<char32_t>(cp));
    a.char_to_byte[cp] = b;
  }
  return a;
}

}  // namespace

std::string one_character(const std::string& text, std::string_view where) {
  const std::size_t n = text.empty() ? 0 : core::utf8_sequence_length(text, 0);
  if (n == 0 || n != text.size())
    fail("{}: replacement '{}' must be exactly one character", where, utf8_lossy(text));
  return text;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet = make_alphabet();
  return alphabet;
}

std::string byte_level_encode(std::string_view text) {
  const ByteLevelAlphabet& a = byte_level_alphabet();
  std::string out;
  out.reserve(text.size() * 2);
  for (const char c : text)
    out.append(a.byte_to_char[static_cast<unsigned char>(c)]);
  return out;
}

bool byte_level_decode(std::string_view token, std::string& bytes) {
  const ByteLevelAlphabet& a = byte_level_alphabet();
  std::size_t i = 0;
  while (i < token.size()) {
    const std::size_t n = core::utf8_sequence_length(token, i);
    if (n == 0 || n > 2) return false;  // stand-ins are all below U+0800
    char32_t cp = static_cast<unsigned char>(token[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<unsigned char>(token[i + 1]) & 0x3F);
    if (cp >= a.char_to_byte.size() || a.char_to_byte[cp] < 0) return false;
    bytes.push_back(static_cast<char>(a.char_to_byte[cp]));
    i += n;
  }
  return true;
}

}  // namespace anchorctx::data::hf_bpe
