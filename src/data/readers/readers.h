// Internals of DocumentReader: a byte stream that undoes gzip/zstd and hashes what it reads
// from disk, a line splitter over it, and one FileReader per format. Not a public header: the
// fuzz target and the tests reach in through it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "anchorctx/data/document_reader.h"

namespace anchorctx::data::readers {

// A file (or a memory buffer, for fuzzing) as decompressed bytes.
class ByteStream {
 public:
  static std::unique_ptr<ByteStream> open_file(const std::string& path);
  static std::unique_ptr<ByteStream> from_memory(std::string name, std::string_view bytes);
  virtual ~ByteStream() = default;

  // Up to `n` decompressed bytes into `out`; 0 at the end. Throws anchorctx::Error naming the
  // file for a read error or a corrupt or truncated compressed stream.
  virtual std::size_t read(char* out, std::size_t n) = 0;
  virtual std::uint64_t raw_bytes_read() const = 0;
  // XXH3-128 (hex, as core::hash_file_hex) of the raw bytes; complete once read() has returned 0.
  virtual std::string raw_hash_hex() const = 0;
  virtual std::string compression() const = 0;
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};

// Splits a ByteStream into lines ('\n', a trailing '\r' removed), numbered from 1; a UTF-8
// byte-order mark opening line 1 is dropped (editors on Windows write one; it is no text). The
// buffer grows to the longest line and no further.
class LineReader {
 public:
  explicit LineReader(ByteStream& stream) : stream_(stream) {}
  // The next line (valid until the next call), or false at the end.
  bool next(std::string_view& line, std::int64_t& line_no);

 private:
  bool next_line(std::string_view& line, std::int64_t& line_no);
  bool fill();
  ByteStream& stream_;
  std::string buf_ = std::string(1 << 20, '\0');
  std::size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
  std::int64_t line_no_ = 0;
};

// Bad-input handling shared by the formats: throws "<file>:<line>: <message>", or counts the
// reason when skipping.
struct BadInput {
  bool skip = false;
  std::map<std::string, std::uint64_t>* counts = nullptr;
  void report(const std::string& file, std::int64_t line, const std::string& reason,
              const std::string& message) const;
};

class FileReaderBase {
 public:
  virtual ~FileReaderBase() = default;
  virtual bool next(Document& doc) = 0;
};

std::unique_ptr<FileReaderBase> make_jsonl_reader(ByteStream& stream, const ReaderOptions& options,
                                                  const BadInput& bad);
std::unique_ptr<FileReaderBase> make_text_reader(ByteStream& stream, const ReaderOptions& options,
                                                 const BadInput& bad);

// `text` without a leading UTF-8 byte-order mark (EF BB BF).
std::string_view without_bom(std::string_view text);

// 1-based line and column of the first byte of `text` that is not valid UTF-8 (text must be
// invalid). Only for error messages: a plain scalar scan.
std::pair<std::int64_t, std::int64_t> first_invalid_utf8(std::string_view text);

}  // namespace anchorctx::data::readers
