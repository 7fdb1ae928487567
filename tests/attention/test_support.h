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
};

struct RandomLayout {
  attention::AttentionLayout layout;
  std::vector<SequenceSpec> seqs;

  std::int64_t total_tokens() const { return layout.total_tokens(); }

  // The masks of mask.h, written out independently of AttentionLayout.
  bool oracle_visible(attention::MaskKind mask, int b, std::int32_t q, std::int32_t k) const {
    if (k > q) return false;
    if (mask == attention::MaskKind::causal) return true;
    if (mask == attention::MaskKind::anchor && k < seqs[b].anchor_len) return true;
    return oracle_doc_start(b, q) == oracle_doc_start(b, k);
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
      text += fmt::format("[seq {}: len {} anchor {} docs {}] ", b, seqs[b].len, seqs[b].anchor_len,
                          seqs[b].doc_starts);
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

    // The raw list handed to from_arrays: a single document may be given as an empty list, and
    // the leading 0 may be left out (both mean the same layout).
    std::vector<std::int32_t> raw = seq.doc_starts;
    if (raw.size() == 1 && coin(rng) < 50) raw.clear();
    if (!raw.empty() && coin(rng) < 30) raw.erase(raw.begin());
    doc_starts.insert(doc_starts.end(), raw.begin(), raw.end());
    cu_docs.push_back(static_cast<std::int32_t>(doc_starts.size()));
    cu_seqlens.push_back(cu_seqlens.back() + seq.len);
    anchor_lens.push_back(seq.anchor_len);
    result.seqs.push_back(std::move(seq));
  }
  result.layout =
      attention::AttentionLayout::from_arrays(cu_seqlens, cu_docs, doc_starts, anchor_lens);
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
