// Reading JSON files (model configs, tokenizer.json, trainer states, dataset metadata, reports):
// one place that refuses, naming the file, what the parser would take or the readers could not.
//
// - Anything but a regular file: a FIFO blocks open(2) forever, /dev/zero never ends, a folder
//   reads as libstdc++'s "basic_filebuf::underflow" text.
// - Nesting deeper than kMaxJsonDepth: nlohmann's parser copes, but the readers walk what it
//   returns recursively (copies of unmodeled keys, Sequence normalizers within Sequences), and
//   100000 nested arrays in a 200 KB config.json overflowed the stack.
// - A NUL byte: nlohmann stops at one and takes `{...}\0garbage` as valid; JSON text has none.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace anchorctx::core {

// Far beyond any real file's nesting (tokenizer.json and configs stay under 10) and far below
// what the recursive readers' stacks take.
inline constexpr int kMaxJsonDepth = 512;

// The bytes of `path`; `what` says what the file is for the messages ("the model config").
// Throws anchorctx::Error naming the file when it is missing, not a regular file or unreadable.
std::string read_regular_file(const std::filesystem::path& path, std::string_view what);

// Parses `text` (from `source`, named in errors) after the checks above. Throws anchorctx::Error.
nlohmann::json parse_json(std::string_view text, std::string_view source);

// read_regular_file, then parse_json.
nlohmann::json read_json_file(const std::filesystem::path& path, std::string_view what);

}  // namespace anchorctx::core
