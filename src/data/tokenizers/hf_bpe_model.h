// The BPE model of a tokenizer.json: vocabulary, merge ranks, and the merge loop that turns one
// pre-tokenized word into ids, as the `tokenizers` library's BPE does (merge the lowest-ranked
// adjacent pair, leftmost first; unknown characters go to byte fallback, then to unk).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace anchorctx::data::hf_bpe {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
using StringIdMap = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

struct BpeModelConfig {
  std::vector<std::pair<std::string, std::int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  // Words arrive as raw bytes and the vocabulary is in the GPT-2 byte-level alphabet (the
  // pre-tokenizer ends with ByteLevel): each byte is one initial symbol.
  bool byte_level = false;
};

class BpeModel {
 public:
  // Throws anchorctx::Error (without the file name; the caller adds it) on a merge whose parts
  // or result are not in the vocabulary.
  explicit BpeModel(BpeModelConfig config);

  // Appends the ids of `word` (one pre-tokenized piece) to `out`. Results of short words are
  // kept in a per-thread cache: words repeat, and the model is immutable.
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const;

  // Whether every byte of a word becomes its own token, whatever its neighbours: a byte-level
  // model without merges, ignore_merges, fuse_unk or sub-word affixes (the byte tokenizer
  // written as a tokenizer.json, tokenizer_files.h).
  bool bytewise() const { return bytewise_; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // The token text of `id` (as in the vocabulary), or nullptr for an id without one.
  const std::string* id_to_token(std::int32_t id) const;
  std::int32_t max_id() const { return static_cast<std::int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    std::int32_t rank;
    std::int32_t new_id;
  };
  struct PairHash {
    std::size_t operator()(std::uint64_t key) const noexcept {
      return static_cast<std::size_t>((key ^ (key >> 29)) * 0x9E3779B97F4A7C15ull >> 7);
    }
  };
  static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  const Merge* find_merge(std::int32_t a, std::int32_t b) const {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  void encode_uncached(std::string_view word, std::vector<std::int32_t>& out) const;
  // The initial symbols of `word` (before any merge), with unk and byte fallback applied.
  void initial_symbols(std::string_view word, std::vector<std::int32_t>& symbols) const;
  void merge_all(std::vector<std::int32_t>& symbols) const;

  BpeModelConfig config_;
  StringIdMap vocab_;
  StringIdMap raw_vocab_;  // byte-level models: tokens as raw bytes (for ignore_merges)
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::unordered_map<std::uint64_t, Merge, PairHash> merges_;
  bool bytewise_ = false;
  std::int32_t byte_ids_[256];      // byte-level: the id of each byte's stand-in, or -1
  std::int32_t fallback_ids_[256];  // byte_fallback: the id of <0xNN>, or -1
  std::uint64_t instance_id_;       // keys the per-thread cache
};

}  // namespace anchorctx::data::hf_bpe
