// JSONL and pre-tokenized JSONL: one object per line, parsed with simdjson's DOM parser.
//
// The DOM parser, not On-Demand: On-Demand is lazy and would accept a line whose text field is
// fine but whose tail is broken; a line must be valid JSON as a whole to be taken. The file's
// format (text or pre-tokenized) is fixed by its first object: one with "input_ids" makes the
// file pre-tokenized, unless the format was given.
#include <simdjson.h>

#include <cstring>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "data/readers/readers.h"

namespace anchorctx::data::readers {
namespace {

bool is_blank(std::string_view line) {
  for (const char c : line)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

class JsonlReader final : public FileReaderBase {
 public:
  JsonlReader(ByteStream& stream, const ReaderOptions& options, const BadInput& bad)
      : stream_(stream), lines_(stream), options_(options), bad_(bad) {
    if (options_.format == InputFormat::pretokenized) mode_ = Mode::pretokenized;
    if (options_.format == InputFormat::jsonl) mode_ = Mode::text;
  }

  bool next(Document& doc) override {
    for (;;) {
      if (!pending_.empty()) {
        doc = std::move(pending_.front());
        pending_.pop_front();
        return true;
      }
      std::string_view line;
      std::int64_t line_no = 0;
      if (!lines_.next(line, line_no)) return false;
      if (is_blank(line)) continue;  // blank lines carry no document
      if (parse_line(line, line_no, doc)) return true;
    }
  }

 private:
  enum class Mode { unknown, text, pretokenized };

  // A parsed line's document(s); false when the line was bad and skipped.
  bool parse_line(std::string_view line, std::int64_t line_no, Document& doc) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the end: parse from a padded copy.
    padded_.resize(line.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(padded_.data(), line.data(), line.size());
    simdjson::dom::element root;
    const auto error = parser_.parse(padded_.data(), line.size(), false).get(root);
    if (error) {
      if (error == simdjson::UTF8_ERROR) {
        bad_.report(stream_.name(), line_no, "invalid_utf8", "invalid UTF-8");
      } else {
        bad_.report(stream_.name(), line_no, "malformed_json",
                    fmt::format("malformed JSON: {}", simdjson::error_message(error)));
      }
      return false;
    }
    simdjson::dom::object object;
    if (root.get_object().get(object)) {
      bad_.report(stream_.name(), line_no, "not_an_object", "the line is not a JSON object");
      return false;
    }
    if (mode_ == Mode::unknown) {
      simdjson::dom::element ignored;
      mode_ =
          object["input_ids"].get(ignored) == simdjson::SUCCESS ? Mode::pretokenized : Mode::text;
    }
    std::string source;
    if (!options_.source_field.empty()) {
      simdjson::dom::element value;
      if (object[options_.source_field].get(value) == simdjson::SUCCESS) {
        std::string_view sv;
        if (value.get_string().get(sv) == simdjson::SUCCESS) {
          source = sv;
        } else {
          source = simdjson::to_string(value);  // a number or object as its JSON text
        }
      }
    }
    if (mode_ == Mode::pretokenized) return parse_pretokenized(object, line_no, source, doc);

    simdjson::dom::element text;
    if (object[options_.text_field].get(text) != simdjson::SUCCESS) {
      bad_.report(stream_.name(), line_no, "missing_field",
                  fmt::format("missing text field '{}'", options_.text_field));
      return false;
    }
    std::string_view sv;
    if (text.get_string().get(sv) != simdjson::SUCCESS) {
      bad_.report(stream_.name(), line_no, "wrong_type",
                  fmt::format("text field '{}' is not a string", options_.text_field));
      return false;
    }
    doc.text.assign(sv);
    doc.continues_previous = doc.more_parts = false;
    doc.ids.clear();
    doc.pretokenized = false;
    doc.source = std::move(source);
    doc.line = line_no;
    return true;
  }

  bool parse_pretokenized(simdjson::dom::object& object, std::int64_t line_no,
                          const std::string& source, Document& doc) {
    simdjson::dom::array ids;
    if (object["input_ids"].get_array().get(ids) != simdjson::SUCCESS) {
      bad_.report(stream_.name(), line_no, "missing_field",
                  "missing 'input_ids' (an array of token ids)");
      return false;
    }
    ids_.clear();
    for (simdjson::dom::element e : ids) {
      std::int64_t v = 0;
      if (e.get_int64().get(v) != simdjson::SUCCESS || v < 0 ||
          v > std::numeric_limits<std::int32_t>::max()) {
        bad_.report(
            stream_.name(), line_no, "bad_token_id",
            fmt::format("input_ids[{}] is not a token id (a non-negative integer)", ids_.size()));
        return false;
      }
      ids_.push_back(static_cast<std::int32_t>(v));
    }
    ends_.clear();
    simdjson::dom::element src;
    if (object["source"].get(src) == simdjson::SUCCESS) {
      simdjson::dom::array list;
      if (src.get_array().get(list) != simdjson::SUCCESS) {
        bad_.report(stream_.name(), line_no, "bad_source", "'source' is not an array");
        return false;
      }
      std::int64_t prev = 0;
      for (simdjson::dom::element s : list) {
        std::int64_t end = 0;
        if (s["end"].get_int64().get(end) != simdjson::SUCCESS || end <= prev ||
            end > static_cast<std::int64_t>(ids_.size())) {
          bad_.report(stream_.name(), line_no, "bad_source",
                      fmt::format("source[{}].end is not an increasing offset in (0, {}]",
                                  ends_.size(), ids_.size()));
          return false;
        }
        ends_.push_back(end);
        prev = end;
      }
    }
    if (ends_.empty() || ends_.back() < static_cast<std::int64_t>(ids_.size()))
      ends_.push_back(static_cast<std::int64_t>(ids_.size()));
    std::int64_t begin = 0;
    for (const std::int64_t end : ends_) {
      Document d;
      d.pretokenized = true;
      d.ids.assign(ids_.begin() + begin, ids_.begin() + end);
      d.source = source;
      d.line = line_no;
      pending_.push_back(std::move(d));
      begin = end;
    }
    if (pending_.empty()) return false;
    doc = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }

  ByteStream& stream_;
  LineReader lines_;
  ReaderOptions options_;
  BadInput bad_;
  Mode mode_ = Mode::unknown;
  simdjson::dom::parser parser_;
  std::string padded_;
  std::vector<std::int32_t> ids_;
  std::vector<std::int64_t> ends_;
  std::deque<Document> pending_;
};

}  // namespace

std::unique_ptr<FileReaderBase> make_jsonl_reader(ByteStream& stream, const ReaderOptions& options,
                                                  const BadInput& bad) {
  return std::make_unique<JsonlReader>(stream, options, bad);
}

}  // namespace anchorctx::data::readers
