// llama2.c `tokenizer.bin`: the export of a SentencePiece BPE model that llama2.c's run.c
// reads (needed to import models such as stories260K).
//
// File layout (little-endian): int32 max_token_length, then for each token until the end of
// the file: float32 score, int32 byte length, the bytes. The vocabulary size is not stored.
// By llama2.c's convention id 0 is <unk>, 1 bos, 2 eos, and the byte-fallback pieces
// "<0x00>".."<0xFF>" follow at ids 3..258.
//
// Encoding follows run.c's encode(): a dummy-prefix " " before non-empty text, each UTF-8
// codepoint looked up as a piece (else one byte-fallback token per byte), then repeatedly
// the adjacent pair whose concatenation is a piece with the highest score is merged (the
// leftmost on ties). run.c rescans every pair after each merge (quadratic); here a heap of
// candidate pairs gives the same merge order in O(n log n), so long documents stay fast.
//
// Deliberate differences from run.c, all on inputs where run.c is wrong or undefined:
// special pieces (<unk>, bos, eos) and byte pieces ("<0x41>") are never matched from text or
// produced by a merge (as in SentencePiece, where they are not normal pieces), so the text
// "<0x41>" stays six characters and decode(encode(x)) == x for every x; a NUL byte is
// encoded (run.c stops at it); a missing " " piece falls back to the byte 0x20 (run.c would
// emit id -1).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <queue>
#include <unordered_map>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/core/json_file.h"
#include "data/tokenizers/loaders.h"

namespace anchorctx::data {
namespace {

constexpr std::int32_t kUnk = 0, kBos = 1, kEos = 2;

// Merge candidates scoring at or below this are never merged: run.c starts its search for
// the best pair at -1e10 and only takes a strictly greater score (NaN never qualifies).
constexpr float kMinMergeScore = -1e10f;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::uint32_t read_u32_le(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

// The byte of a byte-fallback piece "<0xNN>" (two uppercase hex digits, as SentencePiece
// writes them), or -1 for any other piece.
int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(std::string path, std::string content_hash, std::vector<std::string> pieces,
                   std::vector<float> scores)
      : path_(std::move(path)),
        content_hash_(std::move(content_hash)),
        pieces_(std::move(pieces)),
        scores_(std::move(scores)) {
    byte_ids_.fill(-1);
    is_byte_.assign(pieces_.size(), false);
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      const auto id = static_cast<std::int32_t>(i);
      const std::string& piece = pieces_[i];
      if (id == kUnk || id == kBos || id == kEos || piece.empty()) continue;
      if (const int byte = byte_piece_value(piece); byte >= 0) {
        is_byte_[i] = true;
        if (byte_ids_[byte] < 0) byte_ids_[byte] = id;
        continue;
      }
      // A duplicated piece keeps its first id.
      text_pieces_.emplace(piece, id);
      max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());
      for (std::size_t k = 1; k < piece.size(); ++k) {
        const auto a = static_cast<unsigned char>(piece[k - 1]);
        const auto b = static_cast<unsigned char>(piece[k]);
        if (a < 128 && b < 128) adjacent_ascii_[a * 128 + b] = true;
      }
    }
  }

  std::vector<std::int32_t> encode(std::string_view text) const override {
    return encode_impl(text, true);
  }
  // Pieces after a cut: no second dummy prefix (the whole text has one, at its start).
  std::vector<std::int32_t> encode_continued(std::string_view text) const override {
    return encode_impl(text, false);
  }

  // A cut between two ASCII bytes that no text piece holds side by side: every merge makes a
  // text piece, so none can join symbols across the cut; each side's merges then happen in the
  // same order as in the whole (the best pair of a side does not depend on the other side, and
  // ties go leftmost within a side as in the whole). ASCII on both sides also makes the cut a
  // codepoint boundary.
  std::size_t stream_cut(std::string_view text, std::size_t from) const override {
    const std::size_t low = std::max<std::size_t>(from, 1);
    for (std::size_t k = text.size(); k-- > low;) {
      const auto a = static_cast<unsigned char>(text[k - 1]);
      const auto b = static_cast<unsigned char>(text[k]);
      if (a < 128 && b < 128 && !adjacent_ascii_[a * 128 + b]) return k;
    }
    return 0;
  }

 private:
  std::vector<std::int32_t> encode_impl(std::string_view text, bool dummy_prefix) const {
    if (text.empty()) return {};
    std::vector<Symbol> symbols;
    symbols.reserve(text.size() + 1);
    if (dummy_prefix) append_piece_or_bytes(" ", symbols);  // its own symbol, as in run.c
    // Codepoints as run.c groups them: a byte that is not a continuation byte (10xxxxxx)
    // starts a group, which takes the continuation bytes after it, 4 bytes at most.
    for (std::size_t i = 0; i < text.size();) {
      std::size_t end = i + 1;
      while (end < text.size() && end - i < 4 &&
             (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
        ++end;
      append_piece_or_bytes(text.substr(i, end - i), symbols);
      i = end;
    }
    const auto n = static_cast<std::int32_t>(symbols.size());
    for (std::int32_t i = 0; i < n; ++i) {
      symbols[i].prev = i - 1;
      symbols[i].next = i + 1 < n ? i + 1 : -1;
    }

    std::priority_queue<Candidate> heap;
    std::string buffer;
    const auto consider = [&](std::int32_t left) {
      if (left < 0) return;
      const std::int32_t right = symbols[left].next;
      if (right < 0 || !symbols[left].mergeable || !symbols[right].mergeable) return;
      const std::string& a = pieces_[symbols[left].id];
      const std::string& b = pieces_[symbols[right].id];
      if (a.size() + b.size() > max_piece_bytes_) return;
      buffer.assign(a).append(b);
      const auto it = text_pieces_.find(std::string_view(buffer));
      if (it == text_pieces_.end()) return;
      const float score = scores_[it->second];
      if (!(score > kMinMergeScore)) return;
      heap.push({score, left, right, it->second, symbols[left].id, symbols[right].id});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i)
      consider(i);

    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      Symbol& left = symbols[c.left];
      Symbol& right = symbols[c.right];
      // Entries go stale when either side took part in another merge since they were pushed.
      if (!left.alive || !right.alive || left.next != c.right || left.id != c.left_id ||
          right.id != c.right_id)
        continue;
      left.id = c.merged_id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      consider(left.prev);
      consider(c.left);
    }

    std::vector<std::int32_t> ids;
    for (std::int32_t i = 0; i >= 0; i = symbols[i].next)
      ids.push_back(symbols[i].id);
    return ids;
  }

 public:
  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string text;
    // As SentencePiece (and run.c after bos): the leading space of the first piece of the
    // text, at the start or right after a bos, is the dummy prefix and is dropped.
    bool at_text_start = true;
    for (const std::int32_t id : ids) {
      require(id >= 0 && id < vocab_size(),
              "tokenizer '{}': id {} is outside the vocabulary [0, {})", path_, id, vocab_size());
      if (id == kUnk || id == kBos || id == kEos) {
        if (id == kBos) at_text_start = true;
        continue;
      }
      std::string_view piece = pieces_[id];
      char byte = 0;
      if (is_byte_[id]) {
        byte = static_cast<char>(byte_piece_value(piece));
        piece = std::string_view(&byte, 1);
      }
      if (at_text_start && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
      at_text_start = false;
      text.append(piece);
    }
    return text;
  }

  std::int32_t vocab_size() const override { return static_cast<std::int32_t>(pieces_.size()); }
  std::optional<std::int32_t> bos_id() const override { return kBos; }
  std::optional<std::int32_t> eos_id() const override { return kEos; }
  // The format has no padding token (id 0 is <unk>, which must not double as one).
  std::optional<std::int32_t> pad_id() const override { return std::nullopt; }
  std::string kind() const override { return "llama2c"; }
  std::string content_hash() const override { return content_hash_; }

 private:
  struct Symbol {
    std::int32_t id;
    std::int32_t prev = -1, next = -1;
    bool mergeable;  // byte-fallback tokens never merge
    bool alive = true;
  };

  // A pair (left, right) of adjacent symbols whose concatenation is the piece merged_id.
  // Ordered for the max-heap: higher score first, then the leftmost pair (symbols keep
  // their initial index, which is their order in the text).
  struct Candidate {
    float score;
    std::int32_t left, right;
    std::int32_t merged_id, left_id, right_id;
    bool operator<(const Candidate& other) const {
      if (score != other.score) return score < other.score;
      return left > other.left;
    }
  };

  void append_piece_or_bytes(std::string_view chunk, std::vector<Symbol>& symbols) const {
    if (const auto it = text_pieces_.find(chunk); it != text_pieces_.end()) {
      symbols.push_back({.id = it->second, .mergeable = true});
      return;
    }
    for (const char c : chunk) {
      const auto byte = static_cast<unsigned char>(c);
      const std::int32_t id = byte_ids_[byte];
      require(id >= 0,
              "tokenizer '{}': cannot encode the byte 0x{:02X}: no piece holds it and the "
              "vocabulary has no byte-fallback piece <0x{:02X}>",
              path_, byte, byte);
      symbols.push_back({.id = id, .mergeable = false});
    }
  }

  std::string path_;
  std::string content_hash_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<bool> is_byte_;
  std::array<std::int32_t, 256> byte_ids_;
  // Normal pieces only (no special or byte pieces): what text and merges may produce.
  std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>> text_pieces_;
  std::size_t max_piece_bytes_ = 0;
  // adjacent_ascii_[a * 128 + b]: some text piece holds ASCII byte a right before b.
  std::vector<bool> adjacent_ascii_ = std::vector<bool>(128 * 128, false);
};

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  const std::string bytes = core::read_regular_file(path, "the tokenizer");
  require(!bytes.empty(), "tokenizer '{}': the file is empty", path);
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t size = bytes.size();
  require(size >= 4,
          "tokenizer '{}': llama2.c tokenizer.bin: {} bytes, too short for the 4-byte header", path,
          size);
  const auto max_token_length = static_cast<std::int32_t>(read_u32_le(data));
  require(max_token_length > 0,
          "tokenizer '{}': llama2.c tokenizer.bin: max_token_length {} in the header is not "
          "positive (not a llama2.c tokenizer?)",
          path, max_token_length);

  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::size_t offset = 4;
  while (offset < size) {
    const std::size_t index = pieces.size();
    require(size - offset >= 8,
            "tokenizer '{}': llama2.c tokenizer.bin truncated in token {} (at byte {}: {} bytes "
            "left, a token needs a score and a length, 8 bytes)",
            path, index, offset, size - offset);
    float score;
    const std::uint32_t score_bits = read_u32_le(data + offset);
    static_assert(sizeof(score) == sizeof(score_bits));
    std::memcpy(&score, &score_bits, sizeof(score));
    const auto length = static_cast<std::int32_t>(read_u32_le(data + offset + 4));
    offset += 8;
    require(length >= 0 && length <= max_token_length,
            "tokenizer '{}': llama2.c tokenizer.bin: token {} has length {}, outside [0, {}] "
            "(max_token_length of the header)",
            path, index, length, max_token_length);
    require(static_cast<std::size_t>(length) <= size - offset,
            "tokenizer '{}': llama2.c tokenizer.bin truncated in token {} (its {} bytes run past "
            "the end of the file, {} bytes left)",
            path, index, length, size - offset);
    pieces.emplace_back(bytes.data() + offset, static_cast<std::size_t>(length));
    scores.push_back(score);
    offset += static_cast<std::size_t>(length);
  }
  require(pieces.size() > static_cast<std::size_t>(kEos),
          "tokenizer '{}': llama2.c tokenizer.bin holds {} tokens; it needs at least <unk>, bos "
          "and eos (ids 0, 1, 2)",
          path, pieces.size());
  require(pieces.size() <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
          "tokenizer '{}': too many tokens", path);
  return std::make_unique<Llama2cTokenizer>(path, core::hash_bytes_hex(bytes), std::move(pieces),
                                            std::move(scores));
}

}  // namespace anchorctx::data
