// Comma-separated list options (`--tasks a,b`, `--lengths 1024,2048`, `--deltas 0,2,16`): one
// split and one integer-list parser for every subcommand, so each refuses bad lists alike.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace anchorctx::cli {

// The non-empty items of "a,b,,c" in order.
inline std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// The integers of a non-empty list, each at least `min` and none twice; otherwise
// CLI::ValidationError naming `option` and the offending item (`what` says what an item must
// be).
inline std::vector<std::int64_t> parse_int_list(
    const std::string& option, const std::string& list, const std::string& what,
    std::int64_t min = std::numeric_limits<std::int64_t>::min()) {
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list(list)) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < min) throw CLI::ValidationError(option, what + ": " + item);
    // Every list is a set of lengths, shifts or seeds: a repeat would only redo the same work.
    if (std::find(out.begin(), out.end(), v) != out.end())
      throw CLI::ValidationError(option, item + " is listed twice");
    out.push_back(v);
  }
  if (out.empty()) throw CLI::ValidationError(option, "empty list");
  return out;
}

}  // namespace anchorctx::cli
