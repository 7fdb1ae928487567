#include "data/tokenizers/hf_bpe_text.h"

namespace anchorctx::data::hf_bpe {
namespace {

// The expected sequence length for a lead byte and the allowed range of its second byte
// (Unicode Table 3-7); len 0 for bytes that cannot start a sequence.
struct LeadInfo {
  std::size_t len;
  unsigned char lo, hi;
};

LeadInfo lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes at text[i] form a valid (possibly incomplete) prefix of a sequence: what
// from_utf8_lossy replaces by one U+FFFD. Always at least 1.
std::size_t invalid_prefix_length(std::string_view text, std::size_t i) {
  const LeadInfo info = lead_info(static_cast<unsigned char>(text[i]));
  if (info.len < 2) return 1;
  std::size_t n = 1;
  if (i + 1 >= text.size()) return 1;
  const auto second = static_cast<unsigned char>(text[i + 1]);
  if (second < info.lo || second > info.hi) return 1;
  n = 2;
  while (n < info.len && i + n < text.size() &&
         (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
    ++n;
  return n;
}

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

std::size_t utf8_char_length(std::string_view text, std::size_t i) {
  const LeadInfo info = lead_info(static_cast<unsigned char>(text[i]));
  if (info.len <= 1) return info.len;
  if (i + info.len > text.size()) return 0;
  const auto second = static_cast<unsigned char>(text[i + 1]);
  if (second < info.lo || second > info.hi) return 0;
  for (std::size_t k = 2; k < info.len; ++k)
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
  return info.len;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::size_t n = utf8_char_length(bytes, i);
    if (n > 0) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out.append("\xEF\xBF\xBD");
      i += invalid_prefix_length(bytes, i);
    }
  }
  return out;
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
    const std::size_t n = utf8_char_length(token, i);
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
