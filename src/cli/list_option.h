// Comma-separated list options (`--tasks a,b`, `--lengths 1024,2048`, `--deltas 0,2,16`): one
// split and one integer-list parser for every subcommand, so each refuses bad lists alike.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace anchorctx::cli {

// The items of "a,b,c" in order. An empty item ("a,,b", a trailing comma) is most likely a
// value lost while typing, so it is refused (CLI::ValidationError naming `option`) rather than
// skipped; an empty list gives no items (the caller says whether that is allowed).
inline std::vector<std::string> split_list(const std::string& option, const std::string& list) {
  std::vector<std::string> out;
  if (list.empty()) return out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = list.find(',', start);
    const std::string item =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty())
      throw CLI::ValidationError(option,
                                 "an empty item in '" + list + "' (items are comma-separated)");
    out.push_back(item);
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

// The integers of a non-empty list, each at least `min` and none twice; otherwise
// CLI::ValidationError naming `option` and the offending item (`what` says what an item must
// be).
inline std::vector<std::int64_t> parse_int_list(
    const std::string& option, const std::string& list, const std::string& what,
    std::int64_t min = std::numeric_limits<std::int64_t>::min(),
    std::int64_t max = std::numeric_limits<std::int64_t>::max()) {
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list(option, list)) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < min || v > max)
      throw CLI::ValidationError(option, what + ": " + item);
    // Every list is a set of lengths, shifts or seeds: a repeat would only redo the same work.
    if (std::find(out.begin(), out.end(), v) != out.end())
      throw CLI::ValidationError(option, item + " is listed twice");
    out.push_back(v);
  }
  if (out.empty()) throw CLI::ValidationError(option, "empty list");
  return out;
}

}  // namespace anchorctx::cli
