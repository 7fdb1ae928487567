// Strict UTF-8 checks (no overlong forms, no surrogates, nothing above U+10FFFF): what the
// readers demand of text, and what tests and fuzzers check of decoded output; and the lossy
// conversion that makes any bytes (a model's answer, a tokenizer's decoded bytes) valid text.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace anchorctx::core {

// The length (1-4) of the valid UTF-8 sequence that starts at s[i], or 0 if it is not one.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

bool is_valid_utf8(std::string_view s);

// `bytes` as valid UTF-8, each maximal invalid subpart replaced by U+FFFD: exactly Rust's
// String::from_utf8_lossy, which the `tokenizers` decoders use.
std::string utf8_lossy(std::string_view bytes);

}  // namespace anchorctx::core
