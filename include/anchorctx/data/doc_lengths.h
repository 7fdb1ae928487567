// Document lengths for synthetic packed batches: benchmarks, tests and demos describe how a
// window splits into documents with a short SPEC string instead of real data.
//
//   fixed:N                   every document N tokens
//   lognormal:MEDIAN:SIGMA    lengths drawn from a log-normal law with median MEDIAN
//                             (mu = log(MEDIAN)) and shape SIGMA, rounded, at least 1 token
//   file:PATH                 lengths read from a text file, one positive integer per line
//                             (blank lines and lines starting with '#' are skipped), used in
//                             order and cyclically
//
// Generated sequences hold exactly `seq_len` tokens each; the document that crosses the end is
// truncated, as a packer truncates the last document of a window.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::data {

struct DocLengthSpec {
  enum class Kind { fixed, lognormal, file };

  Kind kind = Kind::fixed;
  std::int32_t fixed_length = 0;      // fixed
  double median = 0.0;                // lognormal
  double sigma = 0.0;                 // lognormal
  std::string path;                   // file
  std::vector<std::int32_t> lengths;  // file: its contents, read when the spec is parsed

  // The spec in its canonical text form (what parse_doc_length_spec accepts).
  std::string to_string() const;
};

// Parses a SPEC (see above); a file: spec reads the file now. Throws anchorctx::Error with the
// spec, or the file and line, of the first problem.
DocLengthSpec parse_doc_length_spec(std::string_view spec);

// Reads a file of document lengths (format of file:PATH). Throws anchorctx::Error naming the
// file and line of a bad line, or the file when it cannot be read or holds no length.
std::vector<std::int32_t> read_doc_lengths_file(const std::string& path);

// Document lengths of `num_sequences` sequences of exactly `seq_len` tokens each. When
// `prefix_len` > 0 every sequence starts with a document of that many tokens (the shared
// anchor of AnchorAttention's layout: [anchor] doc1 doc2 ...) and the spec fills the rest.
// Deterministic for a given seed (and standard library). Throws anchorctx::Error on
// seq_len < 1, num_sequences < 0 or a prefix_len outside [0, seq_len].
std::vector<std::vector<std::int32_t>> generate_doc_lengths(const DocLengthSpec& spec,
                                                            int num_sequences, std::int32_t seq_len,
                                                            std::uint64_t seed,
                                                            std::int32_t prefix_len = 0);

}  // namespace anchorctx::data
