// Packer: tokenized documents into fixed training windows, as the paper's reference code packs
// them (PAPER.md section 2), with the options the reference lacks.
//
// A window holds seq_len + 1 tokens (inputs and the labels shifted by one). Documents of 2
// tokens or fewer are skipped. Documents fill a window in order; the one that overflows is cut
// to fill it, and its remainder either opens the next window (continue_remainder) or is
// dropped. A partial last window is dropped. Every dropped token is counted in PackStats.
//
// Anchor modes:
//   shared   one anchor token at the start of each window: document 0 is the anchor, documents
//            1..n follow (the reference's "flex" engine);
//   per_doc  every document segment in the window starts with its own anchor token (the
//            reference's "flash" engine), a continued remainder included;
//   none     no anchor tokens.
// A window's documents are given by their sorted start offsets (first one 0), local to the
// window, ready for attention::AttentionLayout.
//
// Domain tags are prepended by the caller: a document's `masked_prefix` leading tokens are
// kept out of the loss, recorded per window as loss-mask spans [begin, end) of window offsets
// whose tokens are never targets.
//
// Streaming: a document may also be given in parts (begin_document, add_tokens as often as
// needed, end_document), so one longer than memory allows flows through in windows; the
// windows are exactly those add() gives for the whole document. The packer then holds at most
// max(masked_prefix + min_doc_tokens, part) tokens of it: what decides whether the document is
// too short, and the last min_doc_tokens tokens, which decide whether a remainder after a
// full window is long enough to continue. add() is begin + one part + end. Interleaving needs
// whole documents (a group is shuffled before any is placed): parts are not accepted then.
//
// Interleaved chunks (reference rules): documents of 64..2048 tokens are cut into 2 or 3 parts
// at points in 20%..80% of their length; the parts of a group of `interleave_group` documents
// are shuffled with the order inside each document kept. Each part is its own segment in the
// window (attention layouts hold contiguous documents). Seeded: the same seed, the same
// windows, whatever the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::data {

enum class AnchorMode { shared, per_doc, none };
inline constexpr core::EnumName<AnchorMode> kAnchorModeNames[] = {
    {AnchorMode::shared, "shared"}, {AnchorMode::per_doc, "per_doc"}, {AnchorMode::none, "none"}};
constexpr std::span<const core::EnumName<AnchorMode>> enum_names(AnchorMode) {
  return kAnchorModeNames;
}
std::string_view to_string(AnchorMode mode);
std::optional<AnchorMode> parse_anchor_mode(std::string_view name);

struct PackOptions {
  std::int32_t seq_len = 0;  // window = seq_len + 1 tokens
  AnchorMode anchor_mode = AnchorMode::shared;
  std::int32_t anchor_id = -1;  // required unless anchor_mode == none
  bool continue_remainder = true;
  bool interleave_chunks = false;
  std::int32_t interleave_group = 4096;  // documents shuffled together (bounds memory)
  std::uint64_t seed = 0;
  std::int32_t min_doc_tokens = 3;  // documents shorter than this are skipped
};

struct TokenizedDoc {
  std::vector<std::int32_t> tokens;
  std::int32_t masked_prefix = 0;  // leading tokens excluded from the loss (a domain tag)
};

// One packed window, as the sink sees it (valid during the call).
struct Window {
  std::span<const std::int32_t> tokens;                               // seq_len + 1
  std::span<const std::int32_t> doc_starts;                           // sorted, first 0
  std::span<const std::pair<std::int32_t, std::int32_t>> loss_spans;  // [begin, end), sorted
};

struct PackStats {
  std::uint64_t documents_in = 0;
  std::uint64_t documents_packed = 0;  // documents that put at least one token in a window
  std::uint64_t documents_skipped_short = 0;
  std::uint64_t tokens_in = 0;  // document tokens offered (tags included)
  std::uint64_t tokens_skipped_short = 0;
  std::uint64_t tokens_dropped_remainder = 0;  // overflow remainders dropped (or too short)
  std::uint64_t tokens_dropped_tail = 0;       // the partial last window
  std::uint64_t chunks = 0;                    // interleaved parts made
  std::uint64_t segments = 0;                  // document segments in windows (anchor excluded)
  std::uint64_t anchor_tokens = 0;             // in the windows written
  std::uint64_t windows = 0;
};

class Packer {
 public:
  using Sink = std::function<void(const Window&)>;
  // Throws anchorctx::Error for invalid options (seq_len < 2, no anchor id where needed).
  Packer(PackOptions options, Sink sink);

  void add(TokenizedDoc doc);
  // The same document in parts (not with interleave_chunks): the `masked_prefix` leading
  // tokens of the document are kept out of the loss.
  void begin_document(std::int32_t masked_prefix);
  void add_tokens(std::span<const std::int32_t> tokens);
  void end_document();
  // Packs what interleaving still holds and drops the partial window (counted).
  void finish();
  const PackStats& stats() const { return stats_; }
  const PackOptions& options() const { return options_; }

 private:
  void flush_group();
  void place(std::span<const std::int32_t> tokens, std::int32_t masked_prefix);
  // Places the next tokens of the open document. `last`: they end it; otherwise at least
  // min_doc_tokens (and one) more follow.
  void place_part(std::span<const std::int32_t> tokens, bool last);
  std::size_t held_back() const {
    return static_cast<std::size_t>(std::max<std::int32_t>(options_.min_doc_tokens, 1));
  }
  void start_window();
  void emit();
  // The anchor tokens of the window being filled (shared: 1; per_doc: one per segment).
  std::uint64_t anchors_in_window() const;
  std::size_t window_len() const { return static_cast<std::size_t>(options_.seq_len) + 1; }

  PackOptions options_;
  Sink sink_;
  PackStats stats_;
  std::uint64_t rng_state_;
  std::vector<TokenizedDoc> group_;
  std::vector<std::int32_t> tokens_;
  std::vector<std::int32_t> starts_;
  std::vector<std::pair<std::int32_t, std::int32_t>> spans_;
  bool has_content_ = false;
  bool finished_ = false;
  // The document being placed in parts.
  struct Open {
    bool active = false;
    bool decided = false;       // known long enough to pack (documents_packed counted)
    bool dropping = false;      // its remainder is being dropped
    bool segment_open = false;  // its segment in the current window takes more tokens
    std::int32_t masked_prefix = 0;
    std::size_t placed = 0;             // its tokens placed (or dropped) so far
    std::vector<std::int32_t> pending;  // its tokens not placed yet
  } open_;
};

// The reading order of `count` windows: identity, or a seeded Fisher-Yates shuffle.
std::vector<std::uint64_t> window_order(std::uint64_t count, bool shuffle, std::uint64_t seed);

}  // namespace anchorctx::data
