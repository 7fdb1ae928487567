// libFuzzer target: HuggingFace tokenizer.json loading (load_hf_tokenizer_json): the JSON
// parser, the model, normalizer, pre-tokenizer (PCRE2 patterns), decoder and added-token
// readers. A file that loads then encodes a fixed string and the input's own bytes (as text)
// and decodes the ids. Loading and encoding must end in a result or an anchorctx::Error;
// decode of ids that encode produced must succeed. Seeds: fuzz/corpus/hf_tokenizer_json_fuzz
// (the committed fixtures are good seeds too: tests/data/fixtures/hf_bpe_*.json). Run e.g.
//   build-fuzz/hf_tokenizer_json_fuzz fuzz/corpus/hf_tokenizer_json_fuzz -max_len=32768 \
//       -max_total_time=60
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

void encode_decode(const anchorctx::data::Tokenizer& tok, std::string_view text) {
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const anchorctx::Error&) {
    return;  // e.g. a text the model cannot cover and no unk: reported, fine
  }
  for (const std::int32_t id : ids)
    if (id < 0) anchorctx::fuzz::finding("encode gave a negative id");
  try {
    (void)tok.decode(ids);
  } catch (const anchorctx::Error& e) {
    anchorctx::fuzz::finding("decode rejected ids that encode produced:", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const anchorctx::fuzz::ScratchFile file("tokenizer.json");
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<anchorctx::data::Tokenizer> tok;
  try {
    tok = anchorctx::data::load_hf_tokenizer_json(file.write(bytes));
  } catch (const anchorctx::Error&) {
    return 0;  // not a tokenizer.json we take, reported: fine
  }
  encode_decode(*tok,
                "Hello, world! It's 2024: caf\xC3\xA9 \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80"
                "  <s> <|endoftext|> \t\n\xFF\x80 end");
  encode_decode(*tok, bytes.substr(0, 2048));
  encode_decode(*tok, "");
  return 0;
}
