// The built-in byte tokenizer: every byte is its own token (0..255), then bos 256, eos 257,
// pad 258. It needs no file, takes any byte string (valid UTF-8 or not) and is the embedded
// default of the data pipeline.
#include <algorithm>

#include "anchorctx/core/error.h"
#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr std::int32_t kBos = 256, kEos = 257, kPad = 258, kVocab = 259;

  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i)
      ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }

  // Every byte is its own token: any cut is safe.
  std::size_t stream_cut(std::string_view text, std::size_t from) const override {
    return text.size() >= 2 && text.size() - 1 >= std::max<std::size_t>(from, 1) ? text.size() - 1
                                                                                 : 0;
  }

  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (const std::int32_t id : ids) {
      require(id >= 0 && id < kVocab, "byte tokenizer: id {} is outside the vocabulary [0, {})", id,
              kVocab);
      if (id < 256) text.push_back(static_cast<char>(id));
    }
    return text;
  }

  std::int32_t vocab_size() const override { return kVocab; }
  std::optional<std::int32_t> bos_id() const override { return kBos; }
  std::optional<std::int32_t> eos_id() const override { return kEos; }
  std::optional<std::int32_t> pad_id() const override { return kPad; }
  std::string kind() const override { return "byte"; }
  // Nothing is loaded: the identity is the scheme itself, versioned.
  std::string content_hash() const override { return "byte-v1"; }
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() {
  return std::make_unique<ByteTokenizer>();
}

}  // namespace anchorctx::data
