// StreamEncoder: long texts encoded piece by piece at the tokenizer's safe cuts.
#include "anchorctx/data/stream_encoder.h"

#include <algorithm>

#include "anchorctx/core/error.h"

namespace anchorctx::data {

// A cut's safety may depend on a few bytes after it (stream_cut only returns cuts its input
// proves); a search that found none is resumed this far before where it stopped.
constexpr std::size_t kCutLookBack = 8;

StreamCutter::StreamCutter(const Tokenizer& tokenizer, TextPieceSink sink, std::size_t piece_bytes)
    : tokenizer_(tokenizer), sink_(std::move(sink)), piece_bytes_(piece_bytes) {
  require(piece_bytes_ > 0, "StreamEncoder: piece_bytes must be positive");
}

void StreamCutter::emit(std::string_view piece) {
  const bool first = first_;
  first_ = false;
  sink_(piece, first);
}

void StreamCutter::feed(std::string_view text) {
  while (!text.empty()) {
    // Take at most a piece's worth at a time, so the buffer stays near piece_bytes even when
    // the caller feeds a whole file at once.
    const std::size_t take = std::min(text.size(), piece_bytes_);
    buffer_.append(text.substr(0, take));
    text.remove_prefix(take);
    peak_buffered_ = std::max(peak_buffered_, buffer_.size());
    if (buffer_.size() < piece_bytes_) continue;
    const std::size_t cut = tokenizer_.stream_cut(buffer_, searched_);
    if (cut == 0) {
      searched_ = buffer_.size() > kCutLookBack ? buffer_.size() - kCutLookBack : 0;
      continue;
    }
    emit(std::string_view(buffer_).substr(0, cut));
    buffer_.erase(0, cut);
    searched_ = 0;
  }
}

void StreamCutter::finish() {
  if (!buffer_.empty()) emit(buffer_);
  buffer_.clear();
  buffer_.shrink_to_fit();
  searched_ = 0;
  first_ = true;
}

StreamEncoder::StreamEncoder(const Tokenizer& tokenizer, IdSink sink, std::size_t piece_bytes)
    : cutter_(
          tokenizer,
          [&tokenizer, sink = std::move(sink)](std::string_view piece, bool starts_text) {
            const std::vector<std::int32_t> ids =
                starts_text ? tokenizer.encode(piece) : tokenizer.encode_continued(piece);
            if (!ids.empty()) sink(ids);
          },
          piece_bytes) {}

std::vector<std::int32_t> encode_in_pieces(const Tokenizer& tokenizer, std::string_view text,
                                           std::size_t piece_bytes) {
  std::vector<std::int32_t> out;
  StreamEncoder encoder(
      tokenizer,
      [&](std::span<const std::int32_t> ids) { out.insert(out.end(), ids.begin(), ids.end()); },
      piece_bytes);
  encoder.feed(text);
  encoder.finish();
  return out;
}

}  // namespace anchorctx::data
