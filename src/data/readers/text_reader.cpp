// Plain text: a whole file is one document, or each non-blank line is one.
#include <simdjson.h>

#include <string>

#include <fmt/format.h>

#include "data/readers/readers.h"

namespace anchorctx::data::readers {
namespace {

class TextReader final : public FileReaderBase {
 public:
  TextReader(ByteStream& stream, const ReaderOptions& options, const BadInput& bad)
      : stream_(stream), lines_(stream), per_line_(options.one_per_line), bad_(bad) {}

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
  ByteStream& stream_;
  LineReader lines_;
  bool per_line_;
  BadInput bad_;
  bool done_ = false;
};

}  // namespace

std::unique_ptr<FileReaderBase> make_text_reader(ByteStream& stream, const ReaderOptions& options,
                                                 const BadInput& bad) {
  return std::make_unique<TextReader>(stream, options, bad);
}

}  // namespace anchorctx::data::readers
