// The packed dataset on disk: a folder the trainer memory-maps, with O(1) access to window i.
//
// Layout (all integers little-endian; W = seq_len + 1 tokens per window, N windows):
//   meta.json        format name and version, tokenizer identity (kind, content hash, vocab
//                    size, bos/eos), seq_len, anchor mode and id, counts, sources (path, size,
//                    XXH3-128), packing options, skipped-line counts, and the size and XXH3-128
//                    of every file below.
//   tokens.bin       N * W tokens, uint16 when the vocabulary has <= 65536 ids, else uint32.
//   doc_index.bin    uint64 [N+1]: window w's document starts are doc_starts[doc_index[w] ..
//   doc_starts.bin   uint32 [doc_index[N]]   doc_index[w+1]), window-local, sorted, first 0.
//   mask_index.bin   uint64 [N+1]: likewise into mask_spans, counted in spans;
//   mask_spans.bin   uint32 [2 * mask_index[N]]: (begin, end) pairs of tokens never targets.
//   order.bin        uint64 [N]: reading order; logical window i is physical window order[i]
//                    (a seeded shuffle, or the identity).
// The offsets+values pairs keep the variable-length parts compact (4 bytes per document start)
// and still give window i in O(1): two index reads, no scan.
//
// Written through core::AtomicDir: nothing appears under the final name before every file and
// meta.json are complete and synced.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anchorctx/core/mapped_file.h"
#include "anchorctx/core/owned_folder.h"
#include "anchorctx/data/packer.h"

namespace anchorctx::core {
class AtomicDir;
}

namespace anchorctx::data {

inline constexpr int kDatasetFormatVersion = 1;
inline constexpr const char* kDatasetFormatName = "anchorctx-packed";

// What `--force` may replace (core/owned_folder.h): a folder holding exactly a dataset's files
// (the layout above), whose meta.json names the format.
core::OwnedFolderRule dataset_folder_rule();

class DatasetWriter {
 public:
  // Starts writing into a temporary folder beside `out` (which must not exist unless `replace`,
  // and then must be a dataset folder that holds none of `inputs`: dataset_folder_rule()).
  // Throws anchorctx::Error.
  DatasetWriter(const std::filesystem::path& out, std::int32_t seq_len, std::int32_t vocab_size,
                bool replace = false, std::span<const std::filesystem::path> inputs = {});
  ~DatasetWriter();  // without commit(): the temporary folder is removed
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Appends one window (tokens.size() == seq_len + 1; ids checked against the vocabulary).
  void add(const Window& window);
  std::uint64_t windows() const { return windows_; }
  std::uint64_t documents() const { return doc_count_; }

  // Writes order.bin and meta.json (`meta` plus the fields the writer owns: format, seq_len,
  // token dtype, counts of windows/tokens/document starts, files), syncs and renames into
  // place. `order` must be a permutation of [0, windows()).
  void commit(nlohmann::json meta, std::span<const std::uint64_t> order);

 private:
  struct File;
  std::unique_ptr<core::AtomicDir> dir_;
  std::int32_t seq_len_;
  std::int32_t vocab_size_;
  bool wide_;  // uint32 tokens
  std::unique_ptr<File> tokens_, doc_index_, doc_starts_, mask_index_, mask_spans_;
  std::uint64_t windows_ = 0, doc_count_ = 0, span_count_ = 0;
  std::vector<unsigned char> scratch_;
};

class Dataset {
 public:
  // Opens and checks the folder's structure, O(windows + documents + spans), never O(tokens):
  // meta.json a regular file of a known format version whose keys have their types (each
  // file's xxh3_128 and the tokenizer's spec, kind and content_hash strings: meta() readers
  // need not check them), every file present with the size meta.json gives, offsets starting at 0
  // and increasing, every window's document starts sorted in [0, W) from 0, spans sorted inside the
  // window, order.bin a permutation. Throws anchorctx::Error saying which file and what is wrong.
  static Dataset open(const std::filesystem::path& dir);

  // The thorough check (reads every byte, O(tokens)): file hashes against meta.json, which
  // catch a value changed to another valid one, and every token inside the vocabulary. Throws
  // anchorctx::Error naming file and window. Costs in docs/PERFORMANCE.md.
  void verify() const;

  const nlohmann::json& meta() const { return meta_; }
  const std::filesystem::path& path() const { return dir_; }
  std::uint64_t num_windows() const { return windows_; }
  std::int32_t seq_len() const { return seq_len_; }
  std::int32_t window_len() const { return seq_len_ + 1; }
  std::int32_t vocab_size() const { return vocab_size_; }
  AnchorMode anchor_mode() const { return anchor_mode_; }
  std::uint32_t batch_size() const { return batch_size_; }
  // Whole batches of batch_size() consecutive logical windows (a last partial batch is left).
  std::uint64_t num_batches() const { return windows_ / batch_size_; }

  // Logical window i (0 <= i < num_windows()) -> its place in the files.
  std::uint64_t physical(std::uint64_t i) const;
  // Window i's seq_len + 1 tokens into `out` (size window_len()); an id outside the
  // vocabulary (a damaged tokens.bin) throws anchorctx::Error naming the file and window.
  void read_tokens(std::uint64_t i, std::span<std::int32_t> out) const;
  std::vector<std::int32_t> tokens(std::uint64_t i) const;
  // Window-local document starts (sorted, first 0). In shared anchor mode document 0 is the
  // anchor token.
  std::span<const std::uint32_t> doc_starts(std::uint64_t i) const;
  // Loss-mask spans, flattened (begin0, end0, begin1, end1, ...).
  std::span<const std::uint32_t> loss_spans(std::uint64_t i) const;

 private:
  void check_windows() const;                   // open()'s structural checks
  void check_token_ids(std::uint64_t p) const;  // physical window p's ids < vocab_size

  std::filesystem::path dir_;
  nlohmann::json meta_;
  std::uint64_t windows_ = 0;
  std::int32_t seq_len_ = 0;
  std::int32_t vocab_size_ = 0;
  AnchorMode anchor_mode_ = AnchorMode::shared;
  std::uint32_t batch_size_ = 1;
  bool wide_ = false;
  core::MappedFile tokens_, doc_index_, doc_starts_, mask_index_, mask_spans_, order_;
};

}  // namespace anchorctx::data
