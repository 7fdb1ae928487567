// Packer: documents -> windows of seq_len + 1 tokens (see packer.h for the rules).
#include "anchorctx/data/packer.h"

#include <algorithm>

#include "anchorctx/core/error.h"
#include "anchorctx/core/random.h"

namespace anchorctx::data {
namespace {

// Uniform in [0, n), n > 0, from the splitmix64 stream (core/random.h: the same on every platform).
std::uint64_t below(std::uint64_t& state, std::uint64_t n) {
  return core::bits_below(core::splitmix64(state), n);
}

}  // namespace

std::string_view to_string(AnchorMode mode) {
  return core::enum_name(mode);
}

std::optional<AnchorMode> parse_anchor_mode(std::string_view name) {
  return core::parse_enum<AnchorMode>(name);
}

Packer::Packer(PackOptions options, Sink sink)
    : options_(options), sink_(std::move(sink)), rng_state_(options.seed ^ 0xA5C0FFEEull) {
  require(options_.seq_len >= 2, "packer: seq_len must be at least 2, got {}", options_.seq_len);
  require(options_.anchor_mode == AnchorMode::none || options_.anchor_id >= 0,
          "packer: anchor mode {} needs an anchor token id", to_string(options_.anchor_mode));
  require(options_.interleave_group >= 1, "packer: interleave_group must be positive");
  tokens_.reserve(window_len());
  start_window();
}

void Packer::start_window() {
  tokens_.clear();
  starts_.clear();
  spans_.clear();
  has_content_ = false;
  if (options_.anchor_mode == AnchorMode::shared) {
    starts_.push_back(0);
    tokens_.push_back(options_.anchor_id);
  }
}

std::uint64_t Packer::anchors_in_window() const {
  if (options_.anchor_mode == AnchorMode::shared) return 1;
  if (options_.anchor_mode == AnchorMode::per_doc) return starts_.size();  // one per segment
  return 0;
}

void Packer::emit() {
  ++stats_.windows;
  // Counted as windows are written: a dropped partial window's anchors are in no window.
  stats_.anchor_tokens += anchors_in_window();
  sink_(Window{tokens_, starts_, spans_});
  start_window();
}

void Packer::add(TokenizedDoc doc) {
  require(!finished_, "packer: add after finish");
  require(!open_.active, "packer: add while a document is open");
  if (!options_.interleave_chunks) {
    begin_document(doc.masked_prefix);
    add_tokens(doc.tokens);
    end_document();
    return;
  }
  ++stats_.documents_in;
  const std::size_t n = doc.tokens.size();
  stats_.tokens_in += n;
  const std::size_t content = n - std::min<std::size_t>(n, doc.masked_prefix);
  if (content < static_cast<std::size_t>(options_.min_doc_tokens)) {
    ++stats_.documents_skipped_short;
    stats_.tokens_skipped_short += n;
    return;
  }
  ++stats_.documents_packed;
  group_.push_back(std::move(doc));
  if (group_.size() >= static_cast<std::size_t>(options_.interleave_group)) flush_group();
}

void Packer::begin_document(std::int32_t masked_prefix) {
  require(!finished_, "packer: add after finish");
  require(!options_.interleave_chunks, "packer: interleaving takes whole documents (add)");
  require(!open_.active, "packer: begin_document while a document is open");
  ++stats_.documents_in;
  open_.active = true;
  open_.decided = open_.dropping = open_.segment_open = false;
  open_.masked_prefix = std::max<std::int32_t>(masked_prefix, 0);
  open_.placed = 0;
  open_.pending.clear();
}

void Packer::add_tokens(std::span<const std::int32_t> tokens) {
  require(open_.active, "packer: add_tokens without begin_document");
  const std::size_t n = tokens.size();
  const std::size_t held = held_back();
  stats_.tokens_in += n;
  if (open_.dropping) {
    stats_.tokens_dropped_remainder += n;
    open_.placed += n;
    return;
  }
  std::vector<std::int32_t>& pending = open_.pending;
  if (!open_.decided) {
    // Long enough to pack once it holds the masked prefix and min_doc_tokens more; waiting
    // for the prefix plus the held-back tokens also makes the first placement hold the whole
    // prefix, so it gives one loss span per window as a whole placement does.
    const std::size_t needed = static_cast<std::size_t>(open_.masked_prefix) + held;
    if (pending.size() + n < needed) {
      pending.insert(pending.end(), tokens.begin(), tokens.end());
      return;
    }
    open_.decided = true;
    ++stats_.documents_packed;
    if (!pending.empty()) {
      pending.insert(pending.end(), tokens.begin(), tokens.end());
      const std::size_t k = pending.size() - held;
      place_part(std::span<const std::int32_t>(pending).first(k), false);
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(k));
      return;
    }
    place_part(tokens.first(n - held), false);
    pending.assign(tokens.end() - static_cast<std::ptrdiff_t>(held), tokens.end());
    return;
  }
  // Decided: pending holds the last `held` tokens (or fewer after tiny parts).
  if (n < held) {
    pending.insert(pending.end(), tokens.begin(), tokens.end());
    if (pending.size() > held) {
      const std::size_t k = pending.size() - held;
      place_part(std::span<const std::int32_t>(pending).first(k), false);
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(k));
    }
    return;
  }
  place_part(pending, false);
  place_part(tokens.first(n - held), false);
  pending.assign(tokens.end() - static_cast<std::ptrdiff_t>(held), tokens.end());
}

void Packer::end_document() {
  require(open_.active, "packer: end_document without begin_document");
  std::vector<std::int32_t>& pending = open_.pending;
  if (!open_.decided) {
    const std::size_t n = pending.size();
    const std::size_t content = n - std::min<std::size_t>(n, open_.masked_prefix);
    if (content < static_cast<std::size_t>(options_.min_doc_tokens)) {
      ++stats_.documents_skipped_short;
      stats_.tokens_skipped_short += n;
      pending.clear();
      open_.active = false;
      return;
    }
    ++stats_.documents_packed;
    open_.decided = true;
  }
  place_part(pending, true);
  pending.clear();
  if (pending.capacity() > (std::size_t{1} << 16)) pending.shrink_to_fit();
  open_.active = false;
}

void Packer::flush_group() {
  // Cut each eligible document into parts: [doc, begin, end) triples.
  struct Part {
    std::uint32_t doc;
    std::uint32_t begin, end;
  };
  std::vector<std::vector<Part>> parts(group_.size());
  std::vector<std::uint32_t> deck;  // one entry per part, naming its document
  for (std::uint32_t d = 0; d < group_.size(); ++d) {
    const auto len = static_cast<std::uint32_t>(group_[d].tokens.size());
    std::vector<std::uint32_t> cuts;
    if (len >= 64 && len <= 2048) {
      const std::uint32_t pieces = 2 + static_cast<std::uint32_t>(below(rng_state_, 2));
      const std::uint32_t lo = (len * 2 + 9) / 10, hi = (len * 8) / 10;  // 20%..80%
      while (cuts.size() + 1 < pieces) {
        const std::uint32_t c = lo + static_cast<std::uint32_t>(below(rng_state_, hi - lo + 1));
        if (std::find(cuts.begin(), cuts.end(), c) == cuts.end()) cuts.push_back(c);
      }
      std::sort(cuts.begin(), cuts.end());
    }
    std::uint32_t begin = 0;
    cuts.push_back(len);
    for (const std::uint32_t c : cuts) {
      parts[d].push_back({d, begin, c});
      deck.push_back(d);
      begin = c;
    }
    if (parts[d].size() > 1) stats_.chunks += parts[d].size();
  }
  // Shuffling one card per part and dealing each document's parts in order keeps the order
  // inside every document and makes every interleaving equally likely.
  for (std::size_t i = deck.size(); i > 1; --i)
    std::swap(deck[i - 1], deck[below(rng_state_, i)]);
  std::vector<std::uint32_t> dealt(group_.size(), 0);
  for (const std::uint32_t d : deck) {
    const Part& p = parts[d][dealt[d]++];
    const auto& tokens = group_[d].tokens;
    const std::int32_t masked =
        std::clamp<std::int32_t>(group_[d].masked_prefix - static_cast<std::int32_t>(p.begin), 0,
                                 static_cast<std::int32_t>(p.end - p.begin));
    place(std::span<const std::int32_t>(tokens).subspan(p.begin, p.end - p.begin), masked);
  }
  group_.clear();
}

void Packer::place(std::span<const std::int32_t> tokens, std::int32_t masked_prefix) {
  open_.dropping = open_.segment_open = false;
  open_.masked_prefix = masked_prefix;
  open_.placed = 0;
  place_part(tokens, true);
}

void Packer::place_part(std::span<const std::int32_t> tokens, bool last) {
  const std::size_t n = tokens.size();
  if (open_.dropping) {
    stats_.tokens_dropped_remainder += n;
    open_.placed += n;
    return;
  }
  const std::size_t w = window_len();
  const auto masked = static_cast<std::size_t>(open_.masked_prefix);
  std::size_t i = 0;
  while (i < n) {
    if (!open_.segment_open) {
      starts_.push_back(static_cast<std::int32_t>(tokens_.size()));
      if (options_.anchor_mode == AnchorMode::per_doc) {
        tokens_.push_back(options_.anchor_id);
        if (tokens_.size() == w) {
          // Only the anchor fitted: the segment is the anchor alone, the document moves on.
          has_content_ = true;
          emit();
          continue;
        }
      }
      ++stats_.segments;
      has_content_ = true;
      open_.segment_open = true;
    }
    const std::size_t take = std::min(w - tokens_.size(), n - i);
    const std::int32_t at = static_cast<std::int32_t>(tokens_.size());
    tokens_.insert(tokens_.end(), tokens.begin() + static_cast<std::ptrdiff_t>(i),
                   tokens.begin() + static_cast<std::ptrdiff_t>(i + take));
    const std::size_t mask_end = std::min(masked, open_.placed + take);
    if (mask_end > open_.placed)
      spans_.emplace_back(at, at + static_cast<std::int32_t>(mask_end - open_.placed));
    i += take;
    open_.placed += take;
    if (tokens_.size() < w) continue;
    emit();
    open_.segment_open = false;
    if (i == n && last) return;  // the document ends with the window
    // The rest opens the next window, unless remainders are dropped or it is too short (only
    // known for the last part; otherwise at least min_doc_tokens more follow).
    const std::size_t rest = n - i;
    if (!options_.continue_remainder ||
        (last && rest < static_cast<std::size_t>(options_.min_doc_tokens))) {
      open_.dropping = true;
      stats_.tokens_dropped_remainder += rest;
      open_.placed += rest;
      return;
    }
  }
}

void Packer::finish() {
  if (finished_) return;
  require(!open_.active, "packer: finish while a document is open");
  if (!group_.empty()) flush_group();
  finished_ = true;
  if (has_content_) {
    // Anchor tokens are not document tokens.
    stats_.tokens_dropped_tail += tokens_.size() - anchors_in_window();
  }
  start_window();
}

std::vector<std::uint64_t> window_order(std::uint64_t count, bool shuffle, std::uint64_t seed) {
  std::vector<std::uint64_t> order(count);
  for (std::uint64_t i = 0; i < count; ++i)
    order[i] = i;
  if (!shuffle) return order;
  std::uint64_t state = seed ^ 0x5EEDull;
  for (std::uint64_t i = count; i > 1; --i)
    std::swap(order[i - 1], order[below(state, i)]);
  return order;
}

}  // namespace anchorctx::data
