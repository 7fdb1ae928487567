// llama2.c tokenizer.bin files written by the tests, and such a file as import_llama2c takes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "anchorctx/data/tokenizer.h"
#include "anchorctx/model/llama2c.h"

namespace anchorctx::test {

struct Llama2cPiece {
  std::string text;
  float score = 0.0f;
};

// The bytes of a llama2.c tokenizer.bin: max_token_length (computed from the pieces unless
// given), then per piece its score, length and bytes, all little-endian.
inline std::string llama2c_tokenizer_bytes(const std::vector<Llama2cPiece>& pieces,
                                           std::int32_t max_len = -1) {
  if (max_len < 0) {
    max_len = 0;
    for (const Llama2cPiece& p : pieces)
      max_len = std::max(max_len, static_cast<std::int32_t>(p.text.size()));
  }
  std::string out;
  const auto put_u32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
      out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  put_u32(static_cast<std::uint32_t>(max_len));
  for (const Llama2cPiece& p : pieces) {
    std::uint32_t bits;
    std::memcpy(&bits, &p.score, 4);
    put_u32(bits);
    put_u32(static_cast<std::uint32_t>(p.text.size()));
    out += p.text;
  }
  return out;
}

// A llama2.c tokenizer.bin with `vocab` pieces (what import_llama2c wants beside a checkpoint):
// <unk>, <s>, </s>, then single letters with a counter ("a0", "b0", ..., "a1", ...), scores
// falling with the id.
inline std::string tiny_llama2c_tokenizer_bytes(std::int32_t vocab) {
  std::vector<Llama2cPiece> pieces;
  for (std::int32_t id = 0; id < vocab; ++id) {
    const std::string piece = id == 0   ? "<unk>"
                              : id == 1 ? "<s>"
                              : id == 2 ? "</s>"
                                        : std::string(1, static_cast<char>('a' + (id - 3) % 26)) +
                                              std::to_string((id - 3) / 26);
    pieces.push_back({piece, static_cast<float>(-id)});
  }
  return llama2c_tokenizer_bytes(pieces, 8);
}

// The tokenizer at `path` (a file, or a built-in name such as "byte") loaded as the CLI does
// before it calls import_llama2c.
inline model::Llama2cTokenizerFile llama2c_tokenizer_file(const std::filesystem::path& path) {
  const std::unique_ptr<data::Tokenizer> tokenizer = data::load_tokenizer(path.string());
  return {path, tokenizer->kind(), tokenizer->vocab_size()};
}

}  // namespace anchorctx::test
