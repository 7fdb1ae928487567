#include "anchorctx/data/doc_lengths.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <system_error>

#include <fmt/format.h>

#include "anchorctx/core/error.h"

namespace anchorctx::data {
namespace {

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

// The whole of `text` as a number, or false (no partial matches: "12x" is not 12).
template <typename T>
bool parse_number(std::string_view text, T& value) {
  text = trim(text);
  if (text.empty()) return false;
  if (text.front() == '+') text.remove_prefix(1);
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end;
}

constexpr std::string_view kSpecHelp = "expected fixed:N, lognormal:MEDIAN:SIGMA or file:PATH";

}  // namespace

std::string DocLengthSpec::to_string() const {
  switch (kind) {
    case Kind::fixed:
      return fmt::format("fixed:{}", fixed_length);
    case Kind::lognormal:
      return fmt::format("lognormal:{}:{}", median, sigma);
    case Kind::file:
      return "file:" + path;
  }
  return "?";
}

std::vector<std::int32_t> read_doc_lengths_file(const std::string& path) {
  std::ifstream in(path);
  require(in.good(), "document lengths file '{}': cannot open it", path);
  std::vector<std::int32_t> lengths;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string_view text = trim(line);
    if (text.empty() || text.front() == '#') continue;
    std::int64_t value = 0;
    if (!parse_number(text, value) || value < 1 ||
        value > std::numeric_limits<std::int32_t>::max()) {
      fail("document lengths file '{}' line {}: expected a positive integer, got '{}'", path,
           line_no, text);
    }
    lengths.push_back(static_cast<std::int32_t>(value));
  }
  require(!in.bad(), "document lengths file '{}': read error after line {}", path, line_no);
  require(!lengths.empty(), "document lengths file '{}': no document length in it", path);
  return lengths;
}

DocLengthSpec parse_doc_length_spec(std::string_view spec) {
  const auto colon = spec.find(':');
  require(colon != std::string_view::npos, "document spec '{}': {}", spec, kSpecHelp);
  const std::string_view kind = spec.substr(0, colon);
  const std::string_view rest = spec.substr(colon + 1);
  DocLengthSpec out;
  if (kind == "fixed") {
    std::int64_t n = 0;
    require(parse_number(rest, n) && n >= 1 && n <= std::numeric_limits<std::int32_t>::max(),
            "document spec '{}': the length of fixed:N must be an integer from 1 to {}", spec,
            std::numeric_limits<std::int32_t>::max());
    out.kind = DocLengthSpec::Kind::fixed;
    out.fixed_length = static_cast<std::int32_t>(n);
  } else if (kind == "lognormal") {
    const auto colon2 = rest.find(':');
    require(colon2 != std::string_view::npos,
            "document spec '{}': lognormal needs a median and a sigma (lognormal:MEDIAN:SIGMA)",
            spec);
    double median = 0.0;
    double sigma = 0.0;
    require(parse_number(rest.substr(0, colon2), median) && std::isfinite(median) && median >= 1.0,
            "document spec '{}': the MEDIAN of lognormal:MEDIAN:SIGMA must be a number >= 1", spec);
    require(parse_number(rest.substr(colon2 + 1), sigma) && std::isfinite(sigma) && sigma >= 0.0,
            "document spec '{}': the SIGMA of lognormal:MEDIAN:SIGMA must be a number >= 0", spec);
    out.kind = DocLengthSpec::Kind::lognormal;
    out.median = median;
    out.sigma = sigma;
  } else if (kind == "file") {
    require(!rest.empty(), "document spec '{}': file:PATH needs a path", spec);
    out.kind = DocLengthSpec::Kind::file;
    out.path = std::string(rest);
    out.lengths = read_doc_lengths_file(out.path);
  } else {
    fail("document spec '{}': unknown kind '{}'; {}", spec, kind, kSpecHelp);
  }
  return out;
}

std::vector<std::vector<std::int32_t>> generate_doc_lengths(const DocLengthSpec& spec,
                                                            int num_sequences, std::int32_t seq_len,
                                                            std::uint64_t seed,
                                                            std::int32_t prefix_len) {
  require(num_sequences >= 0, "document lengths: number of sequences {} is negative",
          num_sequences);
  require(seq_len >= 1, "document lengths: sequence length {} must be at least 1", seq_len);
  require(prefix_len >= 0 && prefix_len <= seq_len,
          "document lengths: anchor prefix {} outside [0, sequence length {}]", prefix_len,
          seq_len);
  require(spec.kind != DocLengthSpec::Kind::file || !spec.lengths.empty(),
          "document lengths: file spec '{}' holds no length", spec.path);
  require(spec.kind != DocLengthSpec::Kind::fixed || spec.fixed_length >= 1,
          "document lengths: fixed length {} must be at least 1", spec.fixed_length);

  std::mt19937_64 rng(seed);
  // median = exp(mu) for a log-normal law.
  std::lognormal_distribution<double> lognormal(
      spec.kind == DocLengthSpec::Kind::lognormal ? std::log(spec.median) : 0.0, spec.sigma);
  std::size_t file_pos = 0;  // runs on across sequences: the file is one stream of documents

  const auto next_length = [&]() -> std::int64_t {
    switch (spec.kind) {
      case DocLengthSpec::Kind::fixed:
        return spec.fixed_length;
      case DocLengthSpec::Kind::lognormal: {
        // Clamp before rounding: a heavy tail may exceed any integer type; the caller
        // truncates to the room left anyway.
        const double x = std::min(lognormal(rng), static_cast<double>(seq_len));
        return std::max<std::int64_t>(1, std::llround(x));
      }
      case DocLengthSpec::Kind::file: {
        const std::int32_t n = spec.lengths[file_pos];
        file_pos = (file_pos + 1) % spec.lengths.size();
        return n;
      }
    }
    return 1;
  };

  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(num_sequences));
  for (auto& docs : out) {
    std::int32_t filled = 0;
    if (prefix_len > 0) {
      docs.push_back(prefix_len);
      filled = prefix_len;
    }
    while (filled < seq_len) {
      const auto n =
          static_cast<std::int32_t>(std::min<std::int64_t>(next_length(), seq_len - filled));
      docs.push_back(n);
      filled += n;
    }
  }
  return out;
}

}  // namespace anchorctx::data
