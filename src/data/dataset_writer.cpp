// DatasetWriter: appends windows to the dataset files, hashing every byte on its way out, then
// writes meta.json and renames the folder into place.
#include <fcntl.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "anchorctx/core/atomic_dir.h"
#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/data/dataset.h"
#include "data/hash_stream.h"

namespace anchorctx::data {

// Files are written in the host's byte order, which must be the format's.
static_assert(std::endian::native == std::endian::little, "the dataset format is little-endian");

struct DatasetWriter::File {
  std::string name;
  std::filesystem::path path;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> handle{nullptr, &std::fclose};
  HashStream hash;
  std::uint64_t bytes = 0;
  // Our own buffer: fwrite of many 16 KiB windows through stdio's buffer costs a syscall each.
  std::vector<char> buffer;

  File(const std::filesystem::path& dir, std::string file_name)
      : name(std::move(file_name)), path(dir / name) {
    handle.reset(std::fopen(path.c_str(), "wb"));
    if (!handle) fail("{}: cannot create: {}", path.string(), std::strerror(errno));
    buffer.reserve(kBuffer);
  }
  static constexpr std::size_t kBuffer = std::size_t{4} << 20;
  void write(const void* data, std::size_t n) {
    if (n == 0) return;
    hash.update(data, n);
    bytes += n;
    if (buffer.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      put_out(data, n);
    } else {
      const char* p = static_cast<const char*>(data);
      buffer.insert(buffer.end(), p, p + n);
    }
  }
  void put_out(const void* data, std::size_t n) {
    if (std::fwrite(data, 1, n, handle.get()) != n)
      fail("{}: write failed: {}", path.string(), std::strerror(errno));
    written += n;
  }
  void flush() {
    put_out(buffer.data(), buffer.size());
    buffer.clear();
    // Start the disk writes now, in the background, so the fsync at commit has little left to
    // wait for (a 1 GB token file would otherwise stall the end of the run by seconds).
    if (written - synced >= kSyncStep && std::fflush(handle.get()) == 0) {
      ::sync_file_range(::fileno(handle.get()), static_cast<off_t>(synced),
                        static_cast<off_t>(written - synced), SYNC_FILE_RANGE_WRITE);
      synced = written;
    }
  }
  static constexpr std::uint64_t kSyncStep = std::uint64_t{32} << 20;
  std::uint64_t written = 0, synced = 0;
  template <typename T>
  void put(T value) {
    write(&value, sizeof value);
  }
  nlohmann::json close() {
    flush();
    if (std::fflush(handle.get()) != 0)
      fail("{}: write failed: {}", path.string(), std::strerror(errno));
    handle.reset();
    return {{"bytes", bytes}, {"xxh3_128", hash.hex()}};
  }
};

core::OwnedFolderRule dataset_folder_rule() {
  core::OwnedFolderRule rule;
  rule.kind = "dataset folder";
  rule.required = {"meta.json",      "tokens.bin",     "doc_index.bin", "doc_starts.bin",
                   "mask_index.bin", "mask_spans.bin", "order.bin"};
  rule.identify = [](const std::filesystem::path& dir) -> std::string {
    nlohmann::json meta;
    try {  // a FIFO in its place must not block, nor a damaged one throw: it is not ours
      meta = core::read_json_file(dir / "meta.json", "a dataset's meta.json");
    } catch (const Error&) {
    }
    if (meta.is_object() && meta.value("format", "") == kDatasetFormatName) return "";
    return fmt::format("its meta.json does not name the format \"{}\"", kDatasetFormatName);
  };
  return rule;
}

namespace {

// Checks a --force target before anything is written (the writer only replaces at commit).
std::unique_ptr<core::AtomicDir> open_out(const std::filesystem::path& out, bool replace,
                                          std::span<const std::filesystem::path> inputs) {
  std::error_code ec;
  if (replace && std::filesystem::exists(std::filesystem::symlink_status(out, ec)))
    core::check_replaceable_folder(out, dataset_folder_rule(), inputs);
  return std::make_unique<core::AtomicDir>(out, replace);
}

}  // namespace

DatasetWriter::DatasetWriter(const std::filesystem::path& out, std::int32_t seq_len,
                             std::int32_t vocab_size, bool replace,
                             std::span<const std::filesystem::path> inputs)
    : dir_(open_out(out, replace, inputs)),
      seq_len_(seq_len),
      vocab_size_(vocab_size),
      wide_(vocab_size > 65536) {
  require(seq_len >= 2, "dataset: seq_len must be at least 2, got {}", seq_len);
  require(vocab_size > 0, "dataset: vocab size must be positive, got {}", vocab_size);
  tokens_ = std::make_unique<File>(dir_->path(), "tokens.bin");
  doc_index_ = std::make_unique<File>(dir_->path(), "doc_index.bin");
  doc_starts_ = std::make_unique<File>(dir_->path(), "doc_starts.bin");
  mask_index_ = std::make_unique<File>(dir_->path(), "mask_index.bin");
  mask_spans_ = std::make_unique<File>(dir_->path(), "mask_spans.bin");
  doc_index_->put<std::uint64_t>(0);
  mask_index_->put<std::uint64_t>(0);
}

DatasetWriter::~DatasetWriter() = default;

void DatasetWriter::add(const Window& window) {
  const std::size_t w = static_cast<std::size_t>(seq_len_) + 1;
  require(window.tokens.size() == w, "dataset: a window of {} tokens, expected {}",
          window.tokens.size(), w);
  require(!window.doc_starts.empty() && window.doc_starts[0] == 0,
          "dataset: window {} has no document starting at 0", windows_);
  const std::size_t width = wide_ ? 4 : 2;
  scratch_.resize(w * width);
  // One branch-free pass for the range (vectorises), a precise message only on failure.
  std::uint32_t worst = 0;
  for (std::size_t i = 0; i < w; ++i)
    worst = std::max(worst, static_cast<std::uint32_t>(window.tokens[i]));
  if (worst >= static_cast<std::uint32_t>(vocab_size_)) {
    for (std::size_t i = 0; i < w; ++i) {
      const std::int32_t id = window.tokens[i];
      if (id < 0 || id >= vocab_size_)
        fail("dataset: window {} token {}: id {} outside the vocabulary [0, {})", windows_, i, id,
             vocab_size_);
    }
  }
  if (wide_) {
    std::memcpy(scratch_.data(), window.tokens.data(), w * 4);
  } else {
    auto* out = reinterpret_cast<std::uint16_t*>(scratch_.data());
    for (std::size_t i = 0; i < w; ++i)
      out[i] = static_cast<std::uint16_t>(window.tokens[i]);
  }
  tokens_->write(scratch_.data(), scratch_.size());
  static_assert(sizeof(std::int32_t) == sizeof(std::uint32_t));
  // Starts and span ends are non-negative int32 below W: their bytes are the uint32 values.
  doc_starts_->write(window.doc_starts.data(), window.doc_starts.size() * 4);
  doc_count_ += window.doc_starts.size();
  doc_index_->put<std::uint64_t>(doc_count_);
  for (const auto& [begin, end] : window.loss_spans) {
    mask_spans_->put<std::uint32_t>(static_cast<std::uint32_t>(begin));
    mask_spans_->put<std::uint32_t>(static_cast<std::uint32_t>(end));
  }
  span_count_ += window.loss_spans.size();
  mask_index_->put<std::uint64_t>(span_count_);
  ++windows_;
}

void DatasetWriter::commit(nlohmann::json meta, std::span<const std::uint64_t> order) {
  require(order.size() == windows_, "dataset: an order of {} windows for {} windows", order.size(),
          windows_);
  File order_file(dir_->path(), "order.bin");
  order_file.write(order.data(), order.size() * sizeof(std::uint64_t));
  nlohmann::json files = nlohmann::json::object();
  for (File* f : {tokens_.get(), doc_index_.get(), doc_starts_.get(), mask_index_.get(),
                  mask_spans_.get(), &order_file})
    files[f->name] = f->close();
  meta["format"] = kDatasetFormatName;
  meta["format_version"] = kDatasetFormatVersion;
  meta["seq_len"] = seq_len_;
  meta["window_len"] = seq_len_ + 1;
  meta["vocab_size"] = vocab_size_;
  meta["token_dtype"] = wide_ ? "uint32" : "uint16";
  meta["counts"]["windows"] = windows_;
  meta["counts"]["tokens"] = windows_ * static_cast<std::uint64_t>(seq_len_ + 1);
  meta["counts"]["doc_starts"] = doc_count_;
  meta["counts"]["loss_spans"] = span_count_;
  meta["files"] = files;
  {
    // Source names come from file names (a walked folder's too), which need not be UTF-8: their
    // invalid bytes become U+FFFD here (they only describe the data). Through AtomicFile, whose
    // errors carry the system's reason (an ofstream's said "write failed" only).
    core::write_file_atomic(
        dir_->path() / "meta.json",
        meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }
  dir_->commit();
}

}  // namespace anchorctx::data
