#include "data/tokenizers/hf_bpe_model.h"

#include <algorithm>
#include <atomic>
#include <queue>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "data/tokenizers/hf_bpe_text.h"

namespace anchorctx::data::hf_bpe {
namespace {

std::atomic<std::uint64_t> next_instance_id{1};

// How far a vocabulary's largest id may pass twice its entry count (see the constructor).
constexpr std::int64_t kMaxIdGap = 65536;

// Per-thread word cache: raw word -> ids. One per thread and model, bounded; cleared when
// full (simple, and English text settles on a working set far below the bound).
struct WordCache {
  static constexpr std::size_t kMaxWords = 1 << 17;
  static constexpr std::size_t kMaxWordBytes = 256;
  struct Entry {
    std::uint32_t offset, length;
  };
  std::uint64_t owner = 0;
  std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> map;
  std::vector<std::int32_t> ids;

  void reset(std::uint64_t new_owner) {
    owner = new_owner;
    map.clear();
    ids.clear();
  }
};

WordCache& cache_for(std::uint64_t owner) {
  // A few slots so that a thread alternating between two tokenizers does not thrash.
  thread_local WordCache caches[4];
  thread_local unsigned next_victim = 0;
  for (WordCache& c : caches)
    if (c.owner == owner) return c;
  WordCache& c = caches[next_victim++ % 4];
  c.reset(owner);
  return c;
}

// A symbol of the word being merged: a doubly linked list over a vector.
struct Symbol {
  std::int32_t id;
  std::int32_t prev, next;
  bool alive;
};

// A candidate merge in the queue: lowest rank first, then leftmost.
struct Candidate {
  std::int32_t rank, pos, new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

BpeModel::BpeModel(BpeModelConfig config) : config_(std::move(config)) {
  instance_id_ = next_instance_id.fetch_add(1);
  bytewise_ = config_.byte_level && config_.merges.empty() && !config_.ignore_merges &&
              !config_.fuse_unk && config_.continuing_subword_prefix.empty() &&
              config_.end_of_word_suffix.empty();
  std::int32_t max_id = -1;
  for (const auto& [token, id] : config_.vocab) {
    if (id < 0) fail("vocabulary token '{}' has a negative id {}", token, id);
    max_id = std::max(max_id, id);
  }
  // The id -> token table is dense: a vocabulary's ids are 0..n-1 in every tokenizer.json
  // written, so a gap this large is a damaged file, not a tokenizer (and would size the table).
  const std::int64_t entries = static_cast<std::int64_t>(config_.vocab.size());
  if (max_id >= 2 * entries + kMaxIdGap)
    fail(
        "the vocabulary's {} tokens reach id {}: ids this sparse are not a tokenizer's "
        "(at most 2 x entries + {} are accepted)",
        entries, max_id, kMaxIdGap);
  id_to_token_.resize(static_cast<std::size_t>(max_id + 1));
  has_token_.assign(id_to_token_.size(), false);
  vocab_.reserve(config_.vocab.size());
  for (auto& [token, id] : config_.vocab) {
    vocab_[token] = id;
    id_to_token_[id] = token;
    has_token_[id] = true;
  }

  const ByteLevelAlphabet& alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = token_to_id(alphabet.byte_to_char[b]).value_or(-1);
    fallback_ids_[b] = token_to_id(fmt::format("<0x{:02X}>", b)).value_or(-1);
  }
  if (config_.byte_level) {
    std::string raw;
    for (const auto& [token, id] : vocab_) {
      raw.clear();
      if (byte_level_decode(token, raw)) raw_vocab_.emplace(raw, id);
    }
  }

  // Later duplicates of a pair win, as when `tokenizers` collects its merge map.
  merges_.reserve(config_.merges.size());
  const std::size_t prefix_len = config_.continuing_subword_prefix.size();
  for (std::size_t rank = 0; rank < config_.merges.size(); ++rank) {
    const auto& [a, b] = config_.merges[rank];
    const auto a_id = token_to_id(a), b_id = token_to_id(b);
    if (!a_id || !b_id) fail("merge {} ('{} {}'): a part is not in the vocabulary", rank, a, b);
    std::string merged = a;
    merged.append(std::string_view(b).substr(
        prefix_len > 0 && b.starts_with(config_.continuing_subword_prefix) ? prefix_len : 0));
    const auto new_id = token_to_id(merged);
    if (!new_id)
      fail("merge {} ('{} {}'): the result '{}' is not in the vocabulary", rank, a, b, merged);
    merges_[pair_key(*a_id, *b_id)] = {static_cast<std::int32_t>(rank), *new_id};
  }
  config_.vocab.clear();
  config_.vocab.shrink_to_fit();
  config_.merges.clear();
  config_.merges.shrink_to_fit();
}

std::optional<std::int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= id_to_token_.size() || !has_token_[id])
    return nullptr;
  return &id_to_token_[id];
}

void BpeModel::encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
  if (word.size() > WordCache::kMaxWordBytes) {
    encode_uncached(word, out);
    return;
  }
  WordCache& cache = cache_for(instance_id_);
  if (auto it = cache.map.find(word); it != cache.map.end()) {
    const auto* begin = cache.ids.data() + it->second.offset;
    out.insert(out.end(), begin, begin + it->second.length);
    return;
  }
  const std::size_t start = out.size();
  encode_uncached(word, out);
  if (cache.map.size() >= WordCache::kMaxWords) cache.reset(instance_id_);
  const auto offset = static_cast<std::uint32_t>(cache.ids.size());
  cache.ids.insert(cache.ids.end(), out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
  cache.map.emplace(std::string(word),
                    WordCache::Entry{offset, static_cast<std::uint32_t>(out.size() - start)});
}

void BpeModel::encode_uncached(std::string_view word, std::vector<std::int32_t>& out) const {
  if (config_.ignore_merges) {
    // The whole word is a token: no merging (LLaMA-3 sets this).
    const StringIdMap& map = config_.byte_level ? raw_vocab_ : vocab_;
    if (auto it = map.find(word); it != map.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<std::int32_t> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  merge_all(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::initial_symbols(std::string_view word, std::vector<std::int32_t>& symbols) const {
  const bool affixes =
      !config_.continuing_subword_prefix.empty() || !config_.end_of_word_suffix.empty();
  if (config_.byte_level && !affixes) {
    // Fast path: one symbol per byte, looked up in a table.
    bool all_known = true;
    for (const char c : word) {
      const std::int32_t id = byte_ids_[static_cast<unsigned char>(c)];
      all_known &= id >= 0;
      symbols.push_back(id);
    }
    if (all_known) return;
    symbols.clear();
  }
  // General path, unit by unit (a character, or a lone invalid byte), as `tokenizers`
  // merge_word: vocabulary, else byte fallback, else unk (fused when fuse_unk).
  const std::string mapped = config_.byte_level ? byte_level_encode(word) : std::string();
  const std::string_view text = config_.byte_level ? std::string_view(mapped) : word;
  std::optional<std::int32_t> unk_id;
  if (config_.unk_token) {
    unk_id = token_to_id(*config_.unk_token);
    if (!unk_id) fail("the unk token '{}' is not in the vocabulary", *config_.unk_token);
  }
  bool pending_unk = false;
  std::string unit;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_unit_length(text, i);
    unit.clear();
    if (i > 0) unit.append(config_.continuing_subword_prefix);
    unit.append(text.substr(i, n));
    if (i + n == text.size()) unit.append(config_.end_of_word_suffix);
    i += n;
    if (auto id = token_to_id(unit)) {
      if (pending_unk) symbols.push_back(*unk_id);
      pending_unk = false;
      symbols.push_back(*id);
      continue;
    }
    if (config_.byte_fallback) {
      // `tokenizers` looks up the bytes of the unit with its affixes; affixes are empty in
      // the SentencePiece-style models that use byte fallback.
      const std::string_view bytes = unit;
      const bool all = std::all_of(bytes.begin(), bytes.end(), [&](char c) {
        return fallback_ids_[static_cast<unsigned char>(c)] >= 0;
      });
      if (all) {
        for (const char c : bytes)
          symbols.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
        continue;  // a pending unk stays pending, as in `tokenizers`
      }
    }
    if (unk_id) {
      if (pending_unk && !config_.fuse_unk) symbols.push_back(*unk_id);
      pending_unk = true;
    }
    // Without unk the unit is dropped, as `tokenizers` does.
  }
  if (pending_unk) symbols.push_back(*unk_id);
}

void BpeModel::merge_all(std::vector<std::int32_t>& ids) const {
  if (ids.size() < 2) return;
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap_storage;
  symbols.clear();
  heap_storage.clear();
  const auto n = static_cast<std::int32_t>(ids.size());
  for (std::int32_t i = 0; i < n; ++i)
    symbols.push_back({ids[i], i - 1, i + 1 < n ? i + 1 : -1, true});
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue(
      std::greater<>{}, std::move(heap_storage));
  for (std::int32_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id))
      queue.push({m->rank, i, m->new_id});

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip entries made stale by an earlier merge of either side.
    const Merge* m = find_merge(left.id, right.id);
    if (m == nullptr || m->new_id != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0)
      if (const Merge* pm = find_merge(symbols[left.prev].id, left.id))
        queue.push({pm->rank, left.prev, pm->new_id});
    if (left.next >= 0)
      if (const Merge* nm = find_merge(left.id, symbols[left.next].id))
        queue.push({nm->rank, top.pos, nm->new_id});
  }
  ids.clear();
  for (std::int32_t i = 0; i >= 0; i = symbols[i].next)
    ids.push_back(symbols[i].id);
}

}  // namespace anchorctx::data::hf_bpe
