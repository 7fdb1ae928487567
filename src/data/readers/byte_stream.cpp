// ByteStream: raw file bytes (hashed with XXH3 as they pass) through an optional gzip or zstd
// decoder, chosen by the magic bytes at the start of the file.
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "anchorctx/core/error.h"
#include "anchorctx/core/utf8.h"
#include "data/hash_stream.h"
#include "data/readers/readers.h"

namespace anchorctx::data::readers {
namespace {

constexpr std::size_t kRawChunk = 1 << 18;

// The undecoded bytes: a FILE* or a memory view, hashed on the way.
class RawSource {
 public:
  RawSource(std::string name, std::FILE* file, std::string_view memory)
      : name_(std::move(name)), file_(file), memory_(memory) {}
  ~RawSource() {
    if (file_ != nullptr) std::fclose(file_);
  }
  RawSource(const RawSource&) = delete;
  RawSource& operator=(const RawSource&) = delete;

  std::size_t read(char* out, std::size_t n) {
    std::size_t got = 0;
    if (file_ != nullptr) {
      got = std::fread(out, 1, n, file_);
      if (got < n && std::ferror(file_)) fail("{}: read error: {}", name_, std::strerror(errno));
    } else {
      got = std::min(n, memory_.size() - pos_);
      std::memcpy(out, memory_.data() + pos_, got);
      pos_ += got;
    }
    hash_.update(out, got);
    total_ += got;
    return got;
  }
  std::uint64_t total() const { return total_; }
  std::string hash_hex() const { return hash_.hex(); }

 private:
  std::string name_;
  std::FILE* file_;
  std::string_view memory_;
  std::size_t pos_ = 0;
  HashStream hash_;
  std::uint64_t total_ = 0;
};

// A decoder's error is raised at the read after the one that met it when that read decoded some
// bytes first: those bytes are returned, so the line reader splits and counts every line before
// the damage and the error names the last good line (a truncated stream used to report "after
// line 0", its good bytes thrown away with the exception).
class DeferredError {
 public:
  // Runs `decode()`; on anchorctx::Error, returns `produced()` when positive and keeps the error
  // for the next call, else rethrows.
  template <typename Decode, typename Produced>
  std::size_t run(Decode decode, Produced produced) {
    if (!message_.empty()) throw Error(message_);
    try {
      return decode();
    } catch (const Error& e) {
      const std::size_t got = produced();
      if (got == 0) throw;
      message_ = e.what();
      return got;
    }
  }

 private:
  std::string message_;
};

// Bytes already read from the raw source while sniffing the magic, served first.
class PlainStream final : public ByteStream {
 public:
  PlainStream(std::string name, std::unique_ptr<RawSource> raw, std::string head)
      : raw_(std::move(raw)), head_(std::move(head)) {
    name_ = std::move(name);
  }
  std::size_t read(char* out, std::size_t n) override {
    if (head_pos_ < head_.size()) {
      const std::size_t k = std::min(n, head_.size() - head_pos_);
      std::memcpy(out, head_.data() + head_pos_, k);
      head_pos_ += k;
      return k;
    }
    return raw_->read(out, n);
  }
  std::uint64_t raw_bytes_read() const override { return raw_->total(); }
  std::string raw_hash_hex() const override { return raw_->hash_hex(); }
  std::string compression() const override { return "none"; }

 private:
  std::unique_ptr<RawSource> raw_;
  std::string head_;
  std::size_t head_pos_ = 0;
};

class GzipStream final : public ByteStream {
 public:
  GzipStream(std::string name, std::unique_ptr<RawSource> raw, std::string head)
      : raw_(std::move(raw)), in_(kRawChunk) {
    name_ = std::move(name);
    std::memcpy(in_.data(), head.data(), head.size());
    zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
    zs_.avail_in = static_cast<uInt>(head.size());
    // 15 + 32: a zlib or gzip header, detected by zlib.
    if (inflateInit2(&zs_, 15 + 32) != Z_OK) fail("{}: cannot start the gzip decoder", name_);
  }
  ~GzipStream() override { inflateEnd(&zs_); }

  std::size_t read(char* out, std::size_t n) override {
    return deferred_.run(
        [&] { return decode(out, n); },
        [&] { return static_cast<std::size_t>(reinterpret_cast<char*>(zs_.next_out) - out); });
  }
  std::uint64_t raw_bytes_read() const override { return raw_->total(); }
  std::string raw_hash_hex() const override { return raw_->hash_hex(); }
  std::string compression() const override { return "gzip"; }

 private:
  std::size_t decode(char* out, std::size_t n) {
    zs_.next_out = reinterpret_cast<Bytef*>(out);
    zs_.avail_out = static_cast<uInt>(std::min<std::size_t>(n, 1u << 30));
    while (zs_.avail_out > 0) {
      if (zs_.avail_in == 0 && !raw_eof_) {
        const std::size_t got = raw_->read(in_.data(), in_.size());
        if (got == 0) raw_eof_ = true;
        zs_.next_in = reinterpret_cast<Bytef*>(in_.data());
        zs_.avail_in = static_cast<uInt>(got);
      }
      if (zs_.avail_in == 0 && raw_eof_) {
        if (!member_done_) fail("{}: truncated gzip stream (ends inside compressed data)", name_);
        break;
      }
      if (member_done_) {
        // Concatenated gzip members (as `cat a.gz b.gz` makes) are one stream.
        inflateReset(&zs_);
        member_done_ = false;
      }
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        member_done_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fail("{}: corrupt gzip stream: {}", name_, zs_.msg != nullptr ? zs_.msg : "error");
      }
    }
    return static_cast<std::size_t>(reinterpret_cast<char*>(zs_.next_out) - out);
  }

  std::unique_ptr<RawSource> raw_;
  std::vector<char> in_;
  z_stream zs_{};
  DeferredError deferred_;
  bool raw_eof_ = false;
  bool member_done_ = false;
};

class ZstdStream final : public ByteStream {
 public:
  ZstdStream(std::string name, std::unique_ptr<RawSource> raw, std::string head)
      : raw_(std::move(raw)), in_(ZSTD_DStreamInSize()), dctx_(ZSTD_createDCtx()) {
    name_ = std::move(name);
    if (dctx_ == nullptr) throw std::bad_alloc();
    in_.resize(std::max(in_.size(), head.size()));
    std::memcpy(in_.data(), head.data(), head.size());
    input_ = {in_.data(), head.size(), 0};
  }
  ~ZstdStream() override { ZSTD_freeDCtx(dctx_); }

  std::size_t read(char* out, std::size_t n) override {
    output_ = {out, n, 0};
    return deferred_.run([&] { return decode(); }, [&] { return output_.pos; });
  }
  std::uint64_t raw_bytes_read() const override { return raw_->total(); }
  std::string raw_hash_hex() const override { return raw_->hash_hex(); }
  std::string compression() const override { return "zstd"; }

 private:
  // Fills output_.
  std::size_t decode() {
    ZSTD_outBuffer& output = output_;
    while (output.pos < output.size) {
      if (input_.pos == input_.size && !raw_eof_) {
        const std::size_t got = raw_->read(in_.data(), in_.size());
        if (got == 0) raw_eof_ = true;
        input_ = {in_.data(), got, 0};
      }
      if (input_.pos == input_.size && raw_eof_) {
        if (last_ == 0) break;  // the last frame is complete: a clean end
        // zstd may still hold decoded bytes of the frame: flush them before concluding.
        const std::size_t before = output.pos;
        last_ = ZSTD_decompressStream(dctx_, &output, &input_);
        if (ZSTD_isError(last_))
          fail("{}: corrupt zstd stream: {}", name_, ZSTD_getErrorName(last_));
        if (output.pos > before || last_ == 0) continue;
        fail("{}: truncated zstd stream (ends inside a frame)", name_);
      }
      last_ = ZSTD_decompressStream(dctx_, &output, &input_);
      if (ZSTD_isError(last_)) fail("{}: corrupt zstd stream: {}", name_, ZSTD_getErrorName(last_));
    }
    return output.pos;
  }

  std::unique_ptr<RawSource> raw_;
  std::vector<char> in_;
  ZSTD_DCtx* dctx_;
  ZSTD_inBuffer input_{};
  std::size_t last_ = 1;  // 0 once a frame is complete: nothing has been decoded yet
  bool raw_eof_ = false;
  ZSTD_outBuffer output_{};
  DeferredError deferred_;
};

std::unique_ptr<ByteStream> wrap(std::string name, std::unique_ptr<RawSource> raw) {
  std::string head(4, '\0');
  std::size_t got = 0;
  while (got < 4) {
    const std::size_t k = raw->read(head.data() + got, 4 - got);
    if (k == 0) break;
    got += k;
  }
  head.resize(got);
  const auto starts = [&](std::string_view magic) { return head.starts_with(magic); };
  if (starts("\x1f\x8b")) return std::make_unique<GzipStream>(name, std::move(raw), head);
  if (starts("\x28\xb5\x2f\xfd")) return std::make_unique<ZstdStream>(name, std::move(raw), head);
  return std::make_unique<PlainStream>(std::move(name), std::move(raw), std::move(head));
}

}  // namespace

std::unique_ptr<ByteStream> ByteStream::open_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail("{}: cannot open: {}", path, std::strerror(errno));
  return wrap(path, std::make_unique<RawSource>(path, f, std::string_view{}));
}

std::unique_ptr<ByteStream> ByteStream::from_memory(std::string name, std::string_view bytes) {
  return wrap(name, std::make_unique<RawSource>(name, nullptr, bytes));
}

bool LineReader::fill() {
  if (eof_) return false;
  if (begin_ > 0) {
    // Keep the partial line, drop what was consumed.
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);  // a line longer than the buffer
  std::size_t got = 0;
  try {
    got = stream_.read(buf_.data() + end_, buf_.size() - end_);
  } catch (const Error& e) {
    // Say where the damage was met: the lines before it were read.
    fail("{} (after line {})", e.what(), line_no_);
  }
  if (got == 0) {
    eof_ = true;
    return false;
  }
  end_ += got;
  return true;
}

bool LineReader::next(std::string_view& line, std::int64_t& line_no) {
  if (!next_line(line, line_no)) return false;
  if (line_no == 1) line = without_bom(line);
  return true;
}

bool LineReader::next_line(std::string_view& line, std::int64_t& line_no) {
  std::size_t scan = begin_;
  for (;;) {
    const void* nl = std::memchr(buf_.data() + scan, '\n', end_ - scan);
    if (nl != nullptr) {
      const std::size_t at = static_cast<const char*>(nl) - buf_.data();
      std::size_t stop = at;
      if (stop > begin_ && buf_[stop - 1] == '\r') --stop;
      line = std::string_view(buf_.data() + begin_, stop - begin_);
      begin_ = at + 1;
      line_no = ++line_no_;
      return true;
    }
    const std::size_t scanned = end_ - begin_;
    if (!fill()) {
      if (begin_ == end_) return false;
      std::size_t stop = end_;
      if (buf_[stop - 1] == '\r') --stop;
      line = std::string_view(buf_.data() + begin_, stop - begin_);
      begin_ = end_;
      line_no = ++line_no_;
      return true;
    }
    scan = begin_ + scanned;  // do not search the same bytes twice
  }
}

std::string_view without_bom(std::string_view text) {
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  return text.starts_with(kBom) ? text.substr(kBom.size()) : text;
}

void BadInput::report(const std::string& file, std::int64_t line, const std::string& reason,
                      const std::string& message) const {
  if (!skip || counts == nullptr) fail("{}:{}: {}", file, line, message);
  ++(*counts)[reason];
}

std::pair<std::int64_t, std::int64_t> first_invalid_utf8(std::string_view s) {
  std::int64_t line = 1, col = 1;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = core::utf8_sequence_length(s, i);
    if (len == 0) return {line, col};
    if (s[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
    i += len;
  }
  return {line, col};
}

}  // namespace anchorctx::data::readers
