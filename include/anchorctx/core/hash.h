// Content hashes: the identity of what a dataset was built from (tokenizer files, input
// sources). XXH3-128, written as 32 lowercase hex digits in xxhash's canonical (big-endian)
// order, so the text matches `xxh128sum` on the same bytes.
#pragma once

#include <string>
#include <string_view>

namespace anchorctx::core {

// The XXH3-128 hash of `bytes`, as 32 lowercase hex digits.
std::string hash_bytes_hex(std::string_view bytes);

// The XXH3-128 hash of the contents of the file at `path`, read in chunks (memory bounded
// whatever the file size). Throws anchorctx::Error naming the file when it cannot be read.
std::string hash_file_hex(const std::string& path);

}  // namespace anchorctx::core
