// SentencePiece `.model` files (LLaMA-2, Mistral, ...) through the sentencepiece library
// itself, so the ids are the reference's by construction.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/core/json_file.h"
#include "data/tokenizers/loaders.h"

namespace anchorctx::data {
namespace {

// sentencepiece reports reserved ids it does not have as -1.
std::optional<std::int32_t> optional_id(int id) {
  if (id < 0) return std::nullopt;
  return id;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, std::string content_hash)
      : path_(path), content_hash_(std::move(content_hash)) {}

  // Separate from the constructor so that the processor is loaded in place (it is neither
  // copyable nor movable).
  void load(const std::string& bytes) {
    const sentencepiece::util::Status status = processor_.LoadFromSerializedProto(bytes);
    require(status.ok(), "tokenizer '{}': not a valid SentencePiece model: {}", path_,
            status.ToString());
    vocab_size_ = processor_.GetPieceSize();
    require(vocab_size_ > 0, "tokenizer '{}': the SentencePiece model has no pieces", path_);
    find_stream_cuts();
  }

  std::vector<std::int32_t> encode(std::string_view text) const override {
    // The library's encode never adds bos/eos unless asked through extra options, which are
    // never set here; invalid UTF-8 is mapped by its normalizer, not rejected.
    std::vector<int> ids;
    const sentencepiece::util::Status status = processor_.Encode(text, &ids);
    require(status.ok(), "tokenizer '{}': SentencePiece encode failed: {}", path_,
            status.ToString());
    return std::vector<std::int32_t>(ids.begin(), ids.end());
  }

  // A single space between two printable ASCII characters, when cuts_ allows: the whole text
  // normalizes it to one whitespace symbol between them (printable ASCII is left as it is and
  // a lone space is not collapsed), and no piece holds a printable character followed by that
  // symbol, so no piece (and no merge) crosses it and the lattice splits there.
  std::size_t stream_cut(std::string_view text, std::size_t from) const override {
    if (!cuts_ || text.size() < 3) return 0;
    const auto printable = [](char c) { return c > ' ' && c < 0x7f; };
    const std::size_t low = std::max<std::size_t>(from, 1);
    for (std::size_t k = text.size() - 1; k-- > low;) {
      if (text[k] == ' ' && printable(text[k - 1]) && printable(text[k + 1])) return k;
    }
    return 0;
  }
  // The piece starts with the cut's space: dropped, the model's dummy prefix puts its
  // whitespace symbol back.
  std::vector<std::int32_t> encode_continued(std::string_view text) const override {
    require(cuts_ && !text.empty() && text[0] == ' ',
            "tokenizer '{}': encode_continued on a piece that does not start at a safe cut", path_);
    return encode(text.substr(1));
  }

  std::string decode(std::span<const std::int32_t> ids) const override {
    std::vector<int> checked;
    checked.reserve(ids.size());
    for (const std::int32_t id : ids) {
      require(id >= 0 && id < vocab_size_,
              "tokenizer '{}': id {} is outside the vocabulary [0, {})", path_, id, vocab_size_);
      checked.push_back(id);
    }
    // Control pieces (bos, eos, pad) decode to nothing; the library drops the dummy-prefix
    // space of the first piece and renders <unk> as " \u2047 ", as SentencePiece does.
    std::string text;
    const sentencepiece::util::Status status = processor_.Decode(checked, &text);
    require(status.ok(), "tokenizer '{}': SentencePiece decode failed: {}", path_,
            status.ToString());
    return text;
  }

  std::int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::int32_t> bos_id() const override { return optional_id(processor_.bos_id()); }
  std::optional<std::int32_t> eos_id() const override { return optional_id(processor_.eos_id()); }
  std::optional<std::int32_t> pad_id() const override { return optional_id(processor_.pad_id()); }
  std::string kind() const override { return "sentencepiece"; }
  std::string content_hash() const override { return content_hash_; }

 private:
  // Whether stream_cut may cut: the model adds a dummy prefix (probed: "a" encodes to pieces
  // starting with U+2581) and no piece holds a printable ASCII character followed by U+2581.
  void find_stream_cuts() {
    static constexpr std::string_view kSpace = "\xE2\x96\x81";
    std::vector<std::string> probe;
    if (!processor_.Encode("a", &probe).ok() || probe.empty() || !probe[0].starts_with(kSpace))
      return;
    for (int id = 0; id < vocab_size_; ++id) {
      const std::string& piece = processor_.IdToPiece(id);
      for (std::size_t at = piece.find(kSpace, 1); at != std::string::npos;
           at = piece.find(kSpace, at + 1)) {
        if (piece[at - 1] > ' ' && piece[at - 1] < 0x7f) return;
      }
    }
    cuts_ = true;
  }

  std::string path_;
  std::string content_hash_;
  sentencepiece::SentencePieceProcessor processor_;
  std::int32_t vocab_size_ = 0;
  bool cuts_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_model(const std::string& path) {
  // Read the bytes once: they are both what the library parses and what is hashed, so the
  // recorded identity is exactly the model that was loaded.
  const std::string bytes = core::read_regular_file(path, "the tokenizer");
  require(!bytes.empty(), "tokenizer '{}': the file is empty", path);
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(path, core::hash_bytes_hex(bytes));
  tokenizer->load(bytes);
  return tokenizer;
}

}  // namespace anchorctx::data
