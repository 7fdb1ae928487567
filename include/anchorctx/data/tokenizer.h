// Tokenizer: text <-> token ids, one interface for every kind the data pipeline reads.
//
// Kinds: "byte" (built in: 256 byte tokens, then bos, eos, pad), SentencePiece `.model`
// (through the sentencepiece library), HuggingFace `tokenizer.json` (BPE: byte-level with the
// GPT-2 / LLaMA-3 / Qwen2 pre-tokenizers, or SentencePiece-style with byte fallback), and
// llama2.c `tokenizer.bin`. Token ids are identical to the reference libraries'.
//
// Implementations are immutable after loading, so one instance may be shared by threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text`, without bos or eos (callers add them). Throws anchorctx::Error for text
  // the tokenizer cannot take (the message says why); never crashes on invalid UTF-8.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;

  // The text of `ids` (special tokens dropped). Throws anchorctx::Error on an id outside the
  // vocabulary.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;

  virtual std::int32_t vocab_size() const = 0;
  // The tokenizer's bos token: pack's anchor (else eos), the dataset's recorded bos, ppl's and
  // rope-drift's document start.
  virtual std::optional<std::int32_t> bos_id() const = 0;
  // The bos that encoding "with special tokens" starts with, as the reference library adds it:
  // `tokenize` without --no-bos, generate's prompt, eval's task prompts. bos_id() for every kind
  // but tokenizer.json, whose post-processor decides: none when it adds none, even when the
  // vocabulary names a bos (as transformers' AutoTokenizer encodes such a folder).
  virtual std::optional<std::int32_t> prompt_bos_id() const { return bos_id(); }
  virtual std::optional<std::int32_t> eos_id() const = 0;
  virtual std::optional<std::int32_t> pad_id() const = 0;

  // Long texts in pieces (StreamEncoder, stream_encoder.h). A *safe cut* at k means: for any
  // text T that starts with `text`, encode(T) == encode(T[0, k)) ++ encode_continued(T[k, ...))
  // (and so on at each later cut), so pieces give exactly the ids of the whole.
  // The largest safe cut k with max(from, 1) <= k < text.size() that the bytes of `text` alone
  // prove safe (whatever follows), or 0 when there is none there. Default: none (whole texts).
  virtual std::size_t stream_cut(std::string_view /*text*/, std::size_t /*from*/) const {
    return 0;
  }
  // The ids of a piece that starts at a safe cut: without what a kind does at the start of a
  // text only (llama2.c's and SentencePiece's dummy-prefix space).
  virtual std::vector<std::int32_t> encode_continued(std::string_view text) const {
    return encode(text);
  }

  // "byte", "sentencepiece", "hf_bpe" or "llama2c".
  virtual std::string kind() const = 0;
  // A content hash of what was loaded (hex): the identity recorded in datasets.
  virtual std::string content_hash() const = 0;
};

// "byte" gives the built-in byte tokenizer; otherwise `spec` is a path to a tokenizer file
// (or a folder holding tokenizer.json / tokenizer.model), its kind detected from its content.
// Throws anchorctx::Error naming the file when it cannot be read or is not a known kind.
std::unique_ptr<Tokenizer> load_tokenizer(std::string_view spec);

// The tokenizer file of a model folder, the first of tokenizer.json, tokenizer.model and
// tokenizer.bin that is there (a symbolic link counts, even a broken one: its reader names it),
// or none: the one lookup of load_tokenizer, the checkpoint copy and eval's fallback.
std::optional<std::filesystem::path> folder_tokenizer_file(const std::filesystem::path& dir);

// The built-in byte tokenizer: ids 0..255 are bytes, 256 bos, 257 eos, 258 pad.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

}  // namespace anchorctx::data
