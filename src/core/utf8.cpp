// Strict UTF-8 (see utf8.h), from one table of what each lead byte allows.
#include "anchorctx/core/utf8.h"

namespace anchorctx::core {
namespace {

// The sequence length a lead byte starts and the allowed range of its second byte (Unicode
// Table 3-7, which rules out overlong forms, surrogates and code points above U+10FFFF); len 0
// for bytes that cannot start a sequence.
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

bool continuation(unsigned char b) {
  return (b & 0xC0) == 0x80;
}

// How many bytes at s[i] form a valid but incomplete prefix of a sequence: what
// from_utf8_lossy replaces by one U+FFFD. Always at least 1.
std::size_t invalid_prefix_length(std::string_view s, std::size_t i) {
  const LeadInfo info = lead_info(static_cast<unsigned char>(s[i]));
  if (info.len < 2 || i + 1 >= s.size()) return 1;
  const auto second = static_cast<unsigned char>(s[i + 1]);
  if (second < info.lo || second > info.hi) return 1;
  std::size_t n = 2;
  while (n < info.len && i + n < s.size() && continuation(static_cast<unsigned char>(s[i + n])))
    ++n;
  return n;
}

}  // namespace

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const LeadInfo info = lead_info(static_cast<unsigned char>(s[i]));
  if (info.len <= 1) return info.len;
  if (i + info.len > s.size()) return 0;
  const auto second = static_cast<unsigned char>(s[i + 1]);
  if (second < info.lo || second > info.hi) return 0;
  for (std::size_t k = 2; k < info.len; ++k)
    if (!continuation(static_cast<unsigned char>(s[i + k]))) return 0;
  return info.len;
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::size_t n = utf8_sequence_length(bytes, i);
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

}  // namespace anchorctx::core
