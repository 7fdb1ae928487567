// libFuzzer target: llama2.c tokenizer.bin loading. The input is written to a file and loaded
// as a tokenizer.bin; a file that loads then encodes a fixed string and the input's own bytes
// (as text), and decodes the ids. Loading must end in a tokenizer or an anchorctx::Error;
// encode may throw anchorctx::Error (a byte without a piece); decode of ids that encode
// produced must succeed and, as llama2c_tokenizer.cpp promises, give the text back exactly.
// Build with -DANCHORCTX_FUZZ=ON and clang; run e.g.
//   build-fuzz/llama2c_tokenizer_fuzz fuzz/corpus/llama2c_tokenizer_fuzz -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "data/tokenizers/loaders.h"
#include "fuzz_support.h"

namespace {

void round_trip(const anchorctx::data::Tokenizer& tok, std::string_view text) {
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const anchorctx::Error&) {
    return;  // a byte the vocabulary cannot hold: reported, fine
  }
  for (const std::int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size())
      anchorctx::fuzz::finding("encode gave an id outside the vocabulary");
  std::string back;
  try {
    back = tok.decode(ids);
  } catch (const anchorctx::Error& e) {
    anchorctx::fuzz::finding("decode rejected ids that encode produced:", e.what());
  }
  if (back != text) anchorctx::fuzz::finding("decode(encode(x)) != x");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const anchorctx::fuzz::ScratchFile file("tokenizer.bin");
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<anchorctx::data::Tokenizer> tok;
  try {
    tok = anchorctx::data::load_llama2c_tokenizer(file.write(bytes));
  } catch (const anchorctx::Error&) {
    return 0;  // not a valid tokenizer.bin, reported: fine
  }
  if (tok->vocab_size() < 3) anchorctx::fuzz::finding("loaded a vocabulary without unk/bos/eos");
  round_trip(*tok, "Hello, world! <0x41> <s> caf\xC3\xA9 \xF0\x9F\x98\x80 \xFF\x80 a  b\n");
  round_trip(*tok, bytes.substr(0, 4096));
  round_trip(*tok, "");
  // Every id decodes (special ones to nothing).
  std::vector<std::int32_t> all;
  for (std::int32_t id = 0; id < tok->vocab_size() && id < 4096; ++id)
    all.push_back(id);
  try {
    (void)tok->decode(all);
  } catch (const anchorctx::Error& e) {
    anchorctx::fuzz::finding("decode rejected an id inside the vocabulary:", e.what());
  }
  return 0;
}
