// Helpers shared by the attention tests: random packed layouts (with an independent oracle for
// the masks, so tests never check the library against itself), norms, and bf16 rounding of
// whole vectors.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "anchorctx/attention/layout.h"
#include "anchorctx/attention/mask.h"
#include "anchorctx/core/bf16.h"

namespace anchorctx::test_support {

// A fresh seed per run, so repeated runs explore new inputs; ANCHORCTX_TEST_SEED replays one
// (the failing seed is printed through SCOPED_TRACE).
inline std::uint64_t test_seed() {
  if (const char* s = std::getenv("ANCHORCTX_TEST_SEED"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 10);
  }
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

// One sequence as the generator made it: the raw facts the oracle below reads.
struct SequenceSpec {
  std::int32_t len = 0;
  std::int32_t q_len = 0;                // queries: the last q_len of the len keys
  std::vector<std::int32_t> doc_starts;  // sorted, first 0 (empty when len == 0)
  std::int32_t anchor_len = 0;
};

// What random_layout() may produce.
struct LayoutOptions {
  int min_sequences = 1;
  int max_sequences = 3;
  int max_seq_len = 200;
  int tile = 64;  // document lengths are drawn around this, so documents cross tile edges
  std::vector<std::int32_t> anchor_lens = {0, 1, 3};
  bool allow_empty_sequences = false;
  // Fewer queries than keys (a separate query layout): each sequence's query count is one
  // (decode), all of its keys, or a random number in between.
  bool fewer_queries = false;
};

// Masks beyond the paper's three: every kind with a sliding window, and without causality.
inline std::vector<attention::Mask> mask_variants(std::int32_t window) {
  using attention::MaskKind;
  std::vector<attention::Mask> masks;
  for (MaskKind kind : {MaskKind::causal, MaskKind::intra_doc, MaskKind::anchor}) {
    masks.push_back(kind);
    masks.push_back({kind, window, true});
    masks.push_back({kind, 0, false});
    masks.push_back({kind, window, false});
  }
  return masks;
}

inline std::string describe_mask(const attention::Mask& m) {
  return fmt::format("{}{}{}", attention::to_string(m.kind),
                     m.window > 0 ? fmt::format(" window {}", m.window) : "",
                     m.causal ? "" : " non-causal");
}

struct RandomLayout {
  attention::AttentionLayout layout;
  std::vector<SequenceSpec> seqs;

  std::int64_t total_tokens() const { return layout.total_tokens(); }

  // The masks of mask.h, written out independently of AttentionLayout and visible_keys: local
  // query q stands at key position pos (the queries are the last keys); it never sees past
  // pos causally, past its document's end otherwise, nor `window` or more positions away;
  // within that, anchors are always visible, other keys if the kind allows (same document).
  bool oracle_visible(const attention::Mask& mask, int b, std::int32_t q, std::int32_t k) const {
    const std::int32_t pos = q + seqs[b].len - seqs[b].q_len;
    const bool whole_sequence = mask.kind == attention::MaskKind::causal;
    if (mask.causal && k > pos) return false;
    if (!mask.causal && !whole_sequence && k >= oracle_doc_end(b, pos)) return false;
    if (mask.window > 0 && k >= pos + mask.window) return false;
    if (mask.kind == attention::MaskKind::anchor && k < seqs[b].anchor_len) return true;
    if (mask.window > 0 && k <= pos - mask.window) return false;
    return whole_sequence || oracle_doc_start(b, pos) == oracle_doc_start(b, k);
  }
  std::int32_t oracle_doc_end(int b, std::int32_t pos) const {
    for (std::int32_t s : seqs[b].doc_starts) {
      if (s > pos) return s;
    }
    return seqs[b].len;
  }
  std::int32_t oracle_doc_start(int b, std::int32_t pos) const {
    std::int32_t start = 0;
    for (std::int32_t s : seqs[b].doc_starts) {
      if (s <= pos) start = s;
    }
    return start;
  }

  std::string describe() const {
    std::string text;
    for (std::size_t b = 0; b < seqs.size(); ++b) {
      text += fmt::format("[seq {}: len {} queries {} anchor {} docs {}] ", b, seqs[b].len,
                          seqs[b].q_len, seqs[b].anchor_len, seqs[b].doc_starts);
    }
    return text;
  }
};

// A packed batch with the awkward cases the kernels must survive: one-token documents,
// documents that cross tile edges, lengths that are not multiples of the tile, several
// sequences with different anchor lengths (each drawn from options.anchor_lens, clamped to
// the sequence). Built through from_arrays, sometimes with an empty document list or without
// the leading 0, which the layout must normalise.
inline RandomLayout random_layout(std::mt19937_64& rng, const LayoutOptions& options = {}) {
  std::uniform_int_distribution<int> num_seqs(options.min_sequences, options.max_sequences);
  std::uniform_int_distribution<int> coin(0, 99);
  const int b_count = num_seqs(rng);

  RandomLayout result;
  std::vector<std::int32_t> cu_seqlens = {0};
  std::vector<std::int32_t> cu_seqlens_q = {0};
  std::vector<std::int32_t> cu_docs = {0};
  std::vector<std::int32_t> doc_starts;
  std::vector<std::int32_t> anchor_lens;
  for (int b = 0; b < b_count; ++b) {
    SequenceSpec seq;
    if (options.allow_empty_sequences && coin(rng) < 15) {
      seq.len = 0;
    } else {
      seq.len = std::uniform_int_distribution<int>(1, options.max_seq_len)(rng);
    }
    // Document lengths: a quarter one-token, the rest up to a tile and a half, sometimes longer.
    std::int32_t pos = 0;
    while (pos < seq.len) {
      seq.doc_starts.push_back(pos);
      const int kind = coin(rng);
      std::int32_t doc_len = 1;
      if (kind >= 25 && kind < 85) {
        doc_len = std::uniform_int_distribution<int>(
            2, std::max(2, options.tile + options.tile / 2))(rng);
      } else if (kind >= 85) {
        doc_len = std::uniform_int_distribution<int>(options.tile, 3 * options.tile)(rng);
      }
      pos += doc_len;
    }
    const std::int32_t anchor = options.anchor_lens[std::uniform_int_distribution<std::size_t>(
        0, options.anchor_lens.size() - 1)(rng)];
    seq.anchor_len = std::min(anchor, seq.len);
    seq.q_len = seq.len;
    if (options.fewer_queries && seq.len > 0) {
      const int kind = coin(rng);
      if (kind < 35) {
        seq.q_len = 1;
      } else if (kind < 85) {
        seq.q_len = std::uniform_int_distribution<int>(1, seq.len)(rng);
      }
    }

    // The raw list handed to from_arrays: a single document may be given as an empty list, and
    // the leading 0 may be left out (both mean the same layout).
    std::vector<std::int32_t> raw = seq.doc_starts;
    if (raw.size() == 1 && coin(rng) < 50) raw.clear();
    if (!raw.empty() && coin(rng) < 30) raw.erase(raw.begin());
    doc_starts.insert(doc_starts.end(), raw.begin(), raw.end());
    cu_docs.push_back(static_cast<std::int32_t>(doc_starts.size()));
    cu_seqlens.push_back(cu_seqlens.back() + seq.len);
    cu_seqlens_q.push_back(cu_seqlens_q.back() + seq.q_len);
    anchor_lens.push_back(seq.anchor_len);
    result.seqs.push_back(std::move(seq));
  }
  result.layout =
      options.fewer_queries
          ? attention::AttentionLayout::from_arrays(cu_seqlens_q, cu_seqlens, cu_docs, doc_starts,
                                                    anchor_lens)
          : attention::AttentionLayout::from_arrays(cu_seqlens, cu_docs, doc_starts, anchor_lens);
  return result;
}

// ||x - ref|| / ||ref|| over the whole tensor (L2). A NaN anywhere makes it NaN, which fails
// every `<=` comparison -- what the poisoning of outputs relies on.
inline double relative_error(std::span<const double> x, std::span<const double> ref) {
  if (x.size() != ref.size()) return std::nan("");
  double diff = 0.0;
  double norm = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double d = x[i] - ref[i];
    diff += d * d;
    norm += ref[i] * ref[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

inline std::vector<float> random_floats(std::mt19937_64& rng, std::size_t n, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> x(n);
  for (float& v : x)
    v = dist(rng);
  return x;
}

inline std::vector<double> to_double(std::span<const float> x) {
  return std::vector<double>(x.begin(), x.end());
}

inline std::vector<std::uint16_t> to_bf16_bits(std::span<const float> x) {
  std::vector<std::uint16_t> bits(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    bits[i] = core::float_to_bf16_bits(x[i]);
  return bits;
}

inline std::vector<double> bf16_bits_to_double(std::span<const std::uint16_t> bits) {
  std::vector<double> x(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i)
    x[i] = core::bf16_bits_to_float(bits[i]);
  return x;
}

// Each value replaced by the nearest bf16 (as float): the inputs both sides of a bf16
// comparison see.
inline std::vector<float> round_to_bf16(std::span<const float> x) {
  std::vector<float> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    y[i] = core::round_to_bf16(x[i]);
  return y;
}

}  // namespace anchorctx::test_support
