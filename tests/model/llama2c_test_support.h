// Helpers shared by the llama2.c import and export tests.
#pragma once

#include <cstdint>
#include <string>

namespace anchorctx::llama2c_test {

// A llama2.c tokenizer.bin with `vocab` pieces (what import_llama2c wants beside a checkpoint):
// <unk>, <s>, </s>, then single letters with a counter ("a0", "b0", ..., "a1", ...).
inline std::string tiny_tokenizer_bytes(std::int32_t vocab) {
  std::string out;
  const auto put_i32 = [&](std::int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  put_i32(8);  // max_token_length
  for (std::int32_t id = 0; id < vocab; ++id) {
    const std::string piece = id == 0   ? "<unk>"
                              : id == 1 ? "<s>"
                              : id == 2 ? "</s>"
                                        : std::string(1, static_cast<char>('a' + (id - 3) % 26)) +
                                              std::to_string((id - 3) / 26);
    const float score = static_cast<float>(-id);
    out.append(reinterpret_cast<const char*>(&score), 4);
    put_i32(static_cast<std::int32_t>(piece.size()));
    out += piece;
  }
  return out;
}

}  // namespace anchorctx::llama2c_test
