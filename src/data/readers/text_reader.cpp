// Plain text: a whole file is one document (whole, or in parts of text_part_bytes), or each
// non-blank line is one.
#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "data/readers/readers.h"

namespace anchorctx::data::readers {
namespace {

// The UTF-8 check of a text that arrives in chunks split anywhere: each chunk is checked up to
// its last complete character (the rest is carried into the next), and the line and column
// (in characters, as first_invalid_utf8 counts) reached so far are kept for the message.
class Utf8Tracker {
 public:
  // False at the first invalid character; its 1-based line and column are then in line/col.
  bool feed(std::string_view chunk) {
    std::string joined;
    if (!carry_.empty()) {
      joined = carry_ + std::string(chunk);
      chunk = joined;
    }
    const std::size_t k = complete_prefix(chunk);
    const std::string_view body = chunk.substr(0, k);
    if (!simdjson::validate_utf8(body.data(), body.size())) return locate(body);
    advance(body);
    carry_.assign(chunk.substr(k));
    return true;
  }
  // False when the text ends inside a character.
  bool finish() { return carry_.empty() || locate(carry_); }

  std::int64_t line = 1, col = 1;

 private:
  // The length of the longest prefix of `s` that does not end inside a character: a lead byte
  // among the last three whose sequence runs past the end starts the carry.
  static std::size_t complete_prefix(std::string_view s) {
    const std::size_t lowest = s.size() > 3 ? s.size() - 3 : 0;
    for (std::size_t j = s.size(); j > lowest; --j) {
      const auto b = static_cast<unsigned char>(s[j - 1]);
      if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back
      const std::size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
      return j - 1 + need > s.size() ? j - 1 : s.size();
    }
    return s.size();
  }
  bool locate(std::string_view bad) {
    const auto [l, c] = first_invalid_utf8(bad);
    col = l == 1 ? col + c - 1 : c;
    line += l - 1;
    return false;
  }
  void advance(std::string_view valid) {
    const void* nl = std::memchr(valid.data(), '\n', valid.size());
    std::size_t from = 0;
    if (nl != nullptr) {
      line += std::count(valid.begin(), valid.end(), '\n');
      from = valid.rfind('\n') + 1;
      col = 1;
    }
    for (std::size_t i = from; i < valid.size(); ++i)
      col += (static_cast<unsigned char>(valid[i]) & 0xC0) != 0x80;
  }
  std::string carry_;
};

class TextReader final : public FileReaderBase {
 public:
  TextReader(ByteStream& stream, const ReaderOptions& options, const BadInput& bad)
      : stream_(stream),
        lines_(stream),
        per_line_(options.one_per_line),
        bad_(bad),
        part_bytes_(options.one_per_line ? 0 : options.text_part_bytes) {}

  bool next(Document& doc) override {
    doc.ids.clear();
    doc.pretokenized = false;
    doc.source.clear();
    if (per_line_) {
      std::string_view line;
      std::int64_t line_no = 0;
      while (lines_.next(line, line_no)) {
        if (line.empty()) continue;  // blank lines separate documents, they are none
        if (!simdjson::validate_utf8(line.data(), line.size())) {
          const auto [l, col] = first_invalid_utf8(line);
          (void)l;
          bad_.report(stream_.name(), line_no, "invalid_utf8",
                      fmt::format("invalid UTF-8 at column {}", col));
          continue;
        }
        doc.text.assign(line);
        doc.line = line_no;
        return true;
      }
      return false;
    }
    doc.continues_previous = doc.more_parts = false;
    if (part_bytes_ > 0) return next_part(doc);
    if (done_) return false;
    done_ = true;
    doc.text.clear();
    char buf[1 << 16];
    for (;;) {
      const std::size_t got = stream_.read(buf, sizeof buf);
      if (got == 0) break;
      doc.text.append(buf, got);
    }
    doc.text.erase(0, doc.text.size() - without_bom(doc.text).size());  // as LineReader does
    if (doc.text.empty()) return false;
    if (!simdjson::validate_utf8(doc.text.data(), doc.text.size())) {
      const auto [line, col] = first_invalid_utf8(doc.text);
      bad_.report(stream_.name(), line, "invalid_utf8",
                  fmt::format("invalid UTF-8 at column {}", col));
      return false;
    }
    doc.line = 1;
    return true;
  }

 private:
  // Appends up to `n` bytes read from `stream` to `out`; false at the end.
  static bool read_into(ByteStream& stream, std::string& out, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + n);
    const std::size_t got = stream.read(out.data() + at, n);
    out.resize(at + got);
    return got > 0;
  }

  void report_invalid(const Utf8Tracker& utf8) {
    bad_.report(stream_.name(), utf8.line, "invalid_utf8",
                fmt::format("invalid UTF-8 at column {}", utf8.col));
  }

  // The whole file checked from a second reading (skip_bad with a file of several parts: a
  // bad file must be skipped before any of it is given).
  bool whole_file_is_valid() {
    const std::unique_ptr<ByteStream> again = ByteStream::open_file(stream_.name());
    Utf8Tracker utf8;
    std::string chunk;
    bool first = true;
    for (;;) {
      chunk.clear();
      if (!read_into(*again, chunk, std::size_t{1} << 20)) break;
      const std::string_view text = first ? without_bom(chunk) : std::string_view(chunk);
      first = false;
      if (!utf8.feed(text)) return false;
    }
    return utf8.finish();
  }

  // The next part of the file's one document (text_part_bytes > 0).
  bool next_part(Document& doc) {
    if (done_) return false;
    std::string& part = doc.text;
    part.swap(ahead_);
    ahead_.clear();
    // The first part holds at least 4 bytes, so it is not empty after a byte-order mark.
    const std::size_t want = started_ ? part_bytes_ : std::max<std::size_t>(part_bytes_, 4);
    while (part.size() < want && !eof_)
      eof_ = !read_into(stream_, part, std::min<std::size_t>(want - part.size(), 1 << 16));
    if (!started_) part.erase(0, part.size() - without_bom(part).size());  // as LineReader does
    // Does more follow? (At most a part's worth, so the next part starts with all of it.)
    if (!eof_) eof_ = !read_into(stream_, ahead_, std::min<std::size_t>(part_bytes_, 1 << 16));
    const bool more = !ahead_.empty();
    if (!started_) {
      if (part.empty()) {
        done_ = true;
        return false;
      }
      if (more && bad_.skip && !whole_file_is_valid()) {
        done_ = true;
        bad_.report(stream_.name(), 1, "invalid_utf8", "invalid UTF-8");  // counted, skipped
        return false;
      }
    }
    if (!utf8_.feed(part) || (!more && !utf8_.finish())) {
      done_ = true;
      // Before the first part: skipped whole (or an error), as a file given whole. Later: an
      // error, as skip_bad checked the whole file first.
      if (!started_ || !bad_.skip) report_invalid(utf8_);
      if (started_)
        fail("{}: invalid UTF-8 after parts were given (the file changed while read?)",
             stream_.name());
      return false;
    }
    doc.line = 1;
    doc.continues_previous = started_;
    doc.more_parts = more;
    started_ = true;
    done_ = !more;
    return true;
  }

  ByteStream& stream_;
  LineReader lines_;
  bool per_line_;
  BadInput bad_;
  bool done_ = false;
  std::size_t part_bytes_ = 0;
  std::string ahead_;  // bytes read past the last part given
  bool started_ = false, eof_ = false;
  Utf8Tracker utf8_;
};

}  // namespace

std::unique_ptr<FileReaderBase> make_text_reader(ByteStream& stream, const ReaderOptions& options,
                                                 const BadInput& bad) {
  return std::make_unique<TextReader>(stream, options, bad);
}

}  // namespace anchorctx::data::readers
