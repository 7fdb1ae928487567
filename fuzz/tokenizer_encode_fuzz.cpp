// libFuzzer target: encoding arbitrary bytes as text with fixed tokenizers, loaded once: the
// byte tokenizer, the committed HuggingFace fixtures hf_bpe_llama3.json (byte-level BPE) and
// hf_bpe_spm.json (SentencePiece-style BPE with byte fallback), and the committed SentencePiece
// model spm_bpe.model (through libsentencepiece). For each: encode may throw anchorctx::Error
// only; the ids are inside the vocabulary; decode of them succeeds. Promises checked:
//   byte tokenizer: decode(encode(x)) == x for every x;
//   spm_bpe.model (identity normalization, byte fallback): decode gives valid UTF-8 for every
//     x, and x itself when x is valid UTF-8 without U+2581 (which decodes to a space).
// Run e.g.  build-fuzz/tokenizer_encode_fuzz fuzz/corpus/tokenizer_encode_fuzz -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"
#include "fuzz_support.h"

#ifndef ANCHORCTX_FIXTURES_DIR
#error "ANCHORCTX_FIXTURES_DIR (tests/data/fixtures) must be defined by the build"
#endif

namespace {

using anchorctx::data::Tokenizer;

struct Tokenizers {
  std::unique_ptr<Tokenizer> byte = anchorctx::data::make_byte_tokenizer();
  std::unique_ptr<Tokenizer> llama3 =
      anchorctx::data::load_tokenizer(ANCHORCTX_FIXTURES_DIR "/hf_bpe_llama3.json");
  std::unique_ptr<Tokenizer> hf_spm =
      anchorctx::data::load_tokenizer(ANCHORCTX_FIXTURES_DIR "/hf_bpe_spm.json");
  std::unique_ptr<Tokenizer> spm =
      anchorctx::data::load_tokenizer(ANCHORCTX_FIXTURES_DIR "/spm_bpe.model");
};

// Encodes `text` and decodes the ids into `back`; false when encode refused the text.
bool encode_decode(const Tokenizer& tok, std::string_view text, std::string& back) {
  std::vector<std::int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const anchorctx::Error&) {
    return false;  // refused with a reason: fine
  }
  for (const std::int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size())
      anchorctx::fuzz::finding("encode gave an id outside the vocabulary:", tok.kind());
  try {
    back = tok.decode(ids);
  } catch (const anchorctx::Error& e) {
    anchorctx::fuzz::finding("decode rejected ids that encode produced:", e.what());
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Tokenizers tokenizers;  // a load failure throws here: a broken fixture
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string back;

  if (!encode_decode(*tokenizers.byte, text, back))
    anchorctx::fuzz::finding("the byte tokenizer refused a text");
  if (back != text) anchorctx::fuzz::finding("byte tokenizer: decode(encode(x)) != x");

  encode_decode(*tokenizers.llama3, text, back);
  encode_decode(*tokenizers.hf_spm, text, back);

  if (encode_decode(*tokenizers.spm, text, back)) {
    if (!anchorctx::fuzz::valid_utf8(back))
      anchorctx::fuzz::finding("spm_bpe.model: decode gave invalid UTF-8");
    if (anchorctx::fuzz::valid_utf8(text) && text.find("\xE2\x96\x81") == std::string_view::npos &&
        back != text)
      anchorctx::fuzz::finding("spm_bpe.model: decode(encode(x)) != x for valid UTF-8");
  }
  return 0;
}
