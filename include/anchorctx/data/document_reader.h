// DocumentReader: documents streamed one at a time from corpora on disk.
//
// Formats:
//   jsonl         one JSON object per line; the text in `text_field` ("text"), an optional
//                 `source_field` kept as the document's source (domain tags).
//   pretokenized  JSONL rows {"input_ids": [...], "source": [{"end": n}, ...]}: each `end` is the
//                 exclusive end of a document inside the row (Long-Context-Data-Engineering form);
//                 tokens after the last end form a final document.
//   text          plain text: one document per file, or one per line (`one_per_line`).
// Each file may be gzip- or zstd-compressed: detected by its first bytes, not its name.
//
// Memory is bounded by the largest line (jsonl, pretokenized, text per line) or the largest
// file (text, one document per file) plus a 1 MiB read buffer; nothing else is held.
//
// Bad input (malformed JSON, a missing or non-string text field, invalid UTF-8, an empty
// input, a truncated compressed stream) throws anchorctx::Error naming the file and line. With
// `skip_bad`, bad lines and empty inputs are skipped and counted by reason instead (a truncated
// stream is still an error: what it held is unknown).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "anchorctx/core/enum_names.h"

namespace anchorctx::data {

enum class InputFormat { auto_detect, jsonl, pretokenized, text };
inline constexpr core::EnumName<InputFormat> kInputFormatNames[] = {
    {InputFormat::auto_detect, "auto"},
    {InputFormat::jsonl, "jsonl"},
    {InputFormat::pretokenized, "pretokenized"},
    {InputFormat::text, "text"}};
constexpr std::span<const core::EnumName<InputFormat>> enum_names(InputFormat) {
  return kInputFormatNames;
}

struct ReaderOptions {
  InputFormat format = InputFormat::auto_detect;  // auto: .txt* files are text, else JSONL
                                                  // (pretokenized if a row has input_ids)
  std::string text_field = "text";
  std::string source_field;   // empty: not kept
  bool one_per_line = false;  // text format: one document per line instead of per file
  bool skip_bad = false;
  // Text format, one document per file: 0 gives each file whole; N > 0 gives a file in parts
  // of N bytes (the last shorter), so a file of any size costs N bytes: parts may split a
  // UTF-8 character (their concatenation is the text), and each part's Document says whether
  // it continues the previous one and whether more follow. The UTF-8 check runs as the parts
  // are read; a bad byte found after the first part was delivered is an error (the document is
  // half given), so with skip_bad a file longer than one part is first read once to check it
  // (twice the reading, only then).
  std::size_t text_part_bytes = 0;
};

struct Document {
  std::string text;               // jsonl and text formats
  std::vector<std::int32_t> ids;  // pretokenized format
  bool pretokenized = false;
  std::string source;               // value of the source field, if asked for and present
  std::uint32_t file_index = 0;     // into DocumentReader::sources()
  std::int64_t line = 0;            // 1-based line where the document is (0: whole file)
  bool continues_previous = false;  // a later part of the previous document (text_part_bytes)
  bool more_parts = false;          // more parts of this document follow
};

// One input file as read: its compressed size on disk and the XXH3-128 of those bytes
// (hex, as core::hash_file_hex).
struct SourceInfo {
  std::string path;
  std::string compression;  // "none", "gzip", "zstd"
  std::uint64_t bytes = 0;
  std::string xxh3_128;  // filled once the file has been read to its end
  std::uint64_t documents = 0;
};

class DocumentReader {
 public:
  // `inputs`: files or folders (folders are walked recursively, files in sorted order; hidden
  // files skipped). Throws anchorctx::Error for a path that does not exist or an empty list.
  DocumentReader(const std::vector<std::string>& inputs, ReaderOptions options);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  // The next document, or false at the end of all inputs.
  bool next(Document& doc);

  const std::vector<SourceInfo>& sources() const { return sources_; }
  // Sum of the inputs' sizes on disk (for progress), and bytes read from disk so far.
  std::uint64_t total_bytes() const { return total_bytes_; }
  std::uint64_t bytes_read() const;
  // Skipped lines by reason ("malformed_json", "missing_field", "invalid_utf8", ...).
  const std::map<std::string, std::uint64_t>& skipped() const { return skipped_; }

  struct FileReader;  // one open input file (readers/*.cpp)

 private:
  bool open_next_file();

  ReaderOptions options_;
  std::vector<SourceInfo> sources_;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t finished_bytes_ = 0;
  std::size_t next_file_ = 0;
  std::unique_ptr<FileReader> current_;
  std::map<std::string, std::uint64_t> skipped_;
};

// The files `inputs` stand for, in reading order (folders expanded recursively, sorted).
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs);

}  // namespace anchorctx::data
