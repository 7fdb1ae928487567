// Dataset: the packed folder, memory-mapped and checked.
#include <cstring>

#include "anchorctx/core/error.h"
#include "anchorctx/core/hash.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/data/dataset.h"

namespace anchorctx::data {
namespace {

template <typename T>
std::span<const T> as_array(const core::MappedFile& file) {
  // mmap returns page-aligned memory, so the cast is aligned.
  return {reinterpret_cast<const T*>(file.data()), file.size() / sizeof(T)};
}

std::uint64_t meta_uint(const nlohmann::json& meta, const std::string& dir,
                        std::initializer_list<const char*> keys) {
  const nlohmann::json* node = &meta;
  std::string name;
  for (const char* k : keys) {
    name += (name.empty() ? "" : ".") + std::string(k);
    if (!node->is_object() || !node->contains(k)) fail("{}: meta.json has no '{}'", dir, name);
    node = &(*node)[k];
  }
  if (!node->is_number_unsigned() && !(node->is_number_integer() && node->get<std::int64_t>() >= 0))
    fail("{}: meta.json '{}' is not a non-negative integer", dir, name);
  return node->get<std::uint64_t>();
}

// A string value of meta.json, or an error naming the key (nlohmann's value() would throw its
// own type_error, naming neither the file nor the key).
std::string meta_string(const nlohmann::json& meta, const std::string& dir, const char* key) {
  if (!meta.contains(key)) fail("{}: meta.json has no '{}'", dir, key);
  if (!meta[key].is_string()) fail("{}/meta.json: '{}' is not a string", dir, key);
  return meta[key].get<std::string>();
}

// An optional id of meta.json (absent or null: none) that must lie in [0, vocab).
void check_meta_id(const nlohmann::json& node, const std::string& dir, const std::string& name,
                   std::uint64_t vocab) {
  if (node.is_null()) return;
  if (!node.is_number_integer() || node.get<std::int64_t>() < 0 ||
      node.get<std::uint64_t>() >= vocab)
    fail("{}/meta.json: '{}' is {}, not an id of the vocabulary [0, {})", dir, name, node.dump(),
         vocab);
}

// A count of meta.json that the files determine too: when meta.json records it, it must agree.
void check_meta_count(const nlohmann::json& meta, const std::string& dir, const char* key,
                      std::uint64_t actual, const char* source) {
  if (!meta.contains("counts") || !meta["counts"].is_object() || !meta["counts"].contains(key))
    return;
  const std::uint64_t recorded = meta_uint(meta, dir, {"counts", key});
  if (recorded != actual)
    fail("{}/meta.json: counts.{} is {}, but {} gives {}", dir, key, recorded, source, actual);
}

// An offsets file of n + 1 entries: starts at 0, never decreases (strictly increases when every
// window must hold at least one entry, as document starts do), at most `per_window` per window.
void check_offsets(const std::string& dir, const char* name, std::span<const std::uint64_t> index,
                   std::uint64_t per_window, bool nonempty) {
  if (index[0] != 0) fail("{}/{}: entry 0 is {}, expected 0", dir, name, index[0]);
  for (std::size_t i = 0; i + 1 < index.size(); ++i) {
    if (index[i + 1] < index[i] || (nonempty && index[i + 1] == index[i]))
      fail("{}/{}: window {} has offsets {} then {} ({})", dir, name, i, index[i], index[i + 1],
           index[i + 1] < index[i] ? "decreasing" : "no documents");
    if (index[i + 1] - index[i] > per_window)
      fail("{}/{}: window {} has {} entries, more than its {} tokens", dir, name, i,
           index[i + 1] - index[i], per_window);
  }
}

}  // namespace

Dataset Dataset::open(const std::filesystem::path& dir) {
  Dataset ds;
  ds.dir_ = dir;
  const std::string d = dir.string();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) fail("{}: not a dataset folder (no such folder)", d);
  // Through read_json_file: a FIFO meta.json blocked, a folder gave libstdc++'s text.
  if (!std::filesystem::exists(dir / "meta.json", ec))
    fail("{}: no meta.json (not a packed dataset, or an unfinished one)", d);
  ds.meta_ = core::read_json_file(dir / "meta.json", "the dataset's meta.json");
  const auto& meta = ds.meta_;
  if (!meta.is_object() || !meta.contains("format") || !meta["format"].is_string() ||
      meta["format"].get<std::string>() != kDatasetFormatName)
    fail("{}/meta.json: 'format' is not \"{}\"", d, kDatasetFormatName);
  const std::uint64_t version = meta_uint(meta, d, {"format_version"});
  if (version != kDatasetFormatVersion)
    fail("{}/meta.json: format_version {} is not supported (this build reads {})", d, version,
         kDatasetFormatVersion);
  const std::uint64_t seq_len = meta_uint(meta, d, {"seq_len"});
  if (seq_len < 2 || seq_len > (1u << 30))
    fail("{}/meta.json: seq_len {} out of range", d, seq_len);
  ds.seq_len_ = static_cast<std::int32_t>(seq_len);
  const std::uint64_t vocab = meta_uint(meta, d, {"vocab_size"});
  if (vocab == 0 || vocab > (1u << 31)) fail("{}/meta.json: vocab_size {} out of range", d, vocab);
  ds.vocab_size_ = static_cast<std::int32_t>(vocab);
  const std::string dtype = meta_string(meta, d, "token_dtype");
  if (dtype != "uint16" && dtype != "uint32")
    fail("{}/meta.json: token_dtype '{}' is neither uint16 nor uint32", d, dtype);
  ds.wide_ = dtype == "uint32";
  if (!ds.wide_ && vocab > 65536)
    fail("{}/meta.json: token_dtype uint16 cannot hold a vocabulary of {}", d, vocab);
  const std::string mode_name = meta_string(meta, d, "anchor_mode");
  const auto mode = parse_anchor_mode(mode_name);
  if (!mode) fail("{}/meta.json: unknown anchor_mode '{}'", d, mode_name);
  ds.anchor_mode_ = *mode;
  // The anchor token is put into windows as an id: it must be one of the vocabulary's.
  if (meta.contains("anchor_id")) {
    if (*mode != AnchorMode::none && meta["anchor_id"].is_null())
      fail("{}/meta.json: anchor_id is null but anchor_mode is {}", d, mode_name);
    check_meta_id(meta["anchor_id"], d, "anchor_id", vocab);
  }
  // The tokenizer the ids came from: its vocabulary is the dataset's.
  if (meta.contains("tokenizer")) {
    const nlohmann::json& tok = meta["tokenizer"];
    if (!tok.is_object()) fail("{}/meta.json: 'tokenizer' is not an object", d);
    if (tok.contains("vocab_size") && meta_uint(meta, d, {"tokenizer", "vocab_size"}) != vocab)
      fail("{}/meta.json: tokenizer.vocab_size {} differs from vocab_size {}", d,
           tok["vocab_size"].dump(), vocab);
    for (const char* key : {"bos_id", "eos_id"})
      if (tok.contains(key)) check_meta_id(tok[key], d, std::string("tokenizer.") + key, vocab);
    // Read by train (the run's tokenizer, the resume identity) and inspect --decode.
    for (const char* key : {"spec", "kind", "content_hash"})
      if (tok.contains(key) && !tok[key].is_string())
        fail("{}/meta.json: 'tokenizer.{}' is not a string", d, key);
  }
  // Checked as 64 bits before it is narrowed: 2^32 + 3 must not pass as 3.
  const std::uint64_t batch_size =
      meta.contains("batch_size") ? meta_uint(meta, d, {"batch_size"}) : 1;
  if (batch_size == 0 || batch_size > UINT32_MAX)
    fail("{}/meta.json: batch_size {} out of range [1, {}]", d, batch_size, UINT32_MAX);
  ds.batch_size_ = static_cast<std::uint32_t>(batch_size);
  ds.windows_ = meta_uint(meta, d, {"counts", "windows"});
  const std::uint64_t n = ds.windows_;

  const std::uint64_t w = seq_len + 1;
  const std::uint64_t token_bytes = ds.wide_ ? 4 : 2;
  // Every size below is a product of meta.json's counts: refuse counts whose product overflows
  // (it could otherwise wrap round to the size of a real file).
  if (n > (UINT64_MAX / 8 - 1) / (w * token_bytes))
    fail("{}/meta.json: counts.windows {} is impossibly large", d, n);

  const auto map = [&](const char* name, std::uint64_t expected_bytes) {
    const auto path = dir / name;
    if (!std::filesystem::exists(path, ec)) fail("{}: {} is missing", d, name);
    core::MappedFile f = core::MappedFile::open(path.string());
    const std::uint64_t recorded = meta_uint(meta, d, {"files", name, "bytes"});
    // What verify() compares the file's hash with (and --resume the dataset's identity).
    const nlohmann::json& file_meta = meta["files"][name];
    if (!file_meta.contains("xxh3_128") || !file_meta["xxh3_128"].is_string())
      fail("{}/meta.json: 'files.{}.xxh3_128' is {}, not a string", d, name,
           file_meta.contains("xxh3_128") ? file_meta["xxh3_128"].dump() : "missing");
    if (f.size() != recorded)
      fail("{}/{}: {} bytes, meta.json records {} (truncated or replaced)", d, name, f.size(),
           recorded);
    if (f.size() != expected_bytes)
      fail("{}/{}: {} bytes, expected {} for {} windows", d, name, f.size(), expected_bytes, n);
    return f;
  };
  ds.tokens_ = map("tokens.bin", n * w * token_bytes);
  ds.doc_index_ = map("doc_index.bin", (n + 1) * 8);
  ds.mask_index_ = map("mask_index.bin", (n + 1) * 8);
  ds.order_ = map("order.bin", n * 8);
  // The indexes decide every window's slice of the value files: check them before those files'
  // sizes are derived from their last entries (at most W documents and W spans per window, so
  // the sizes cannot overflow).
  check_offsets(d, "doc_index.bin", as_array<std::uint64_t>(ds.doc_index_), w, true);
  check_offsets(d, "mask_index.bin", as_array<std::uint64_t>(ds.mask_index_), w, false);
  ds.doc_starts_ = map("doc_starts.bin", as_array<std::uint64_t>(ds.doc_index_)[n] * 4);
  ds.mask_spans_ = map("mask_spans.bin", as_array<std::uint64_t>(ds.mask_index_)[n] * 8);
  // Recorded for readers that want the window's length without adding one; it must be that
  // (checked after the files, whose sizes name a changed seq_len more plainly).
  if (meta.contains("window_len") && meta_uint(meta, d, {"window_len"}) != w)
    fail("{}/meta.json: window_len {} is not seq_len + 1 = {}", d, meta["window_len"].dump(), w);
  // The other counts meta.json records, where the files give them in O(1).
  check_meta_count(meta, d, "tokens", n * w, "windows x window_len");
  check_meta_count(meta, d, "doc_starts", as_array<std::uint64_t>(ds.doc_index_)[n],
                   "doc_index.bin");
  check_meta_count(meta, d, "loss_spans", as_array<std::uint64_t>(ds.mask_index_)[n],
                   "mask_index.bin");
  check_meta_count(meta, d, "batches", n / batch_size, "windows / batch_size");
  ds.check_windows();
  return ds;
}

// O(windows + documents + spans): a fraction of the tokens' size, so every open pays it. What
// it cannot see (a token or a document start changed to another valid value) only the hashes
// catch: verify().
void Dataset::check_windows() const {
  const std::string d = dir_.string();
  const std::uint32_t w = static_cast<std::uint32_t>(window_len());
  const auto doc_index = as_array<std::uint64_t>(doc_index_);
  const auto mask_index = as_array<std::uint64_t>(mask_index_);
  const auto all_starts = as_array<std::uint32_t>(doc_starts_);
  const auto all_spans = as_array<std::uint32_t>(mask_spans_);
  for (std::uint64_t p = 0; p < windows_; ++p) {
    const auto starts = all_starts.subspan(doc_index[p], doc_index[p + 1] - doc_index[p]);
    if (starts[0] != 0) fail("{}/doc_starts.bin: window {} starts at {}, not 0", d, p, starts[0]);
    for (std::size_t k = 1; k < starts.size(); ++k) {
      if (starts[k] <= starts[k - 1] || starts[k] >= w)
        fail("{}/doc_starts.bin: window {} document {} starts at {} (after {}, window {} tokens)",
             d, p, k, starts[k], starts[k - 1], w);
    }
    const auto spans =
        all_spans.subspan(2 * mask_index[p], 2 * (mask_index[p + 1] - mask_index[p]));
    for (std::size_t k = 0; k < spans.size(); k += 2) {
      if (spans[k] >= spans[k + 1] || spans[k + 1] > w || (k > 0 && spans[k] < spans[k - 1]))
        fail("{}/mask_spans.bin: window {} span [{}, {}) is not a sorted span inside the window", d,
             p, spans[k], spans[k + 1]);
    }
  }
  std::vector<bool> seen(windows_, false);
  const auto order = as_array<std::uint64_t>(order_);
  for (std::uint64_t i = 0; i < windows_; ++i) {
    if (order[i] >= windows_ || seen[order[i]])
      fail("{}/order.bin: entry {} ({}) is {}: not a permutation of the {} windows", d, i, order[i],
           order[i] >= windows_ ? "out of range" : "repeated", windows_);
    seen[order[i]] = true;
  }
}

void Dataset::verify() const {
  const std::string d = dir_.string();
  for (const char* name : {"tokens.bin", "doc_index.bin", "doc_starts.bin", "mask_index.bin",
                           "mask_spans.bin", "order.bin"}) {
    const core::MappedFile& f = std::string_view(name) == "tokens.bin"       ? tokens_
                                : std::string_view(name) == "doc_index.bin"  ? doc_index_
                                : std::string_view(name) == "doc_starts.bin" ? doc_starts_
                                : std::string_view(name) == "mask_index.bin" ? mask_index_
                                : std::string_view(name) == "mask_spans.bin" ? mask_spans_
                                                                             : order_;
    const std::string& want = meta_["files"][name]["xxh3_128"].get_ref<const std::string&>();
    const std::string got =
        core::hash_bytes_hex(std::string_view(reinterpret_cast<const char*>(f.data()), f.size()));
    if (got != want)
      fail("{}/{}: content hash {} differs from meta.json's {} (the file was altered)", d, name,
           got, want);
  }
  // The structure (offsets, document starts, spans, order) was checked at open; what is left
  // is every token id.
  for (std::uint64_t p = 0; p < windows_; ++p)
    check_token_ids(p);
}

// One window's ids against the vocabulary: O(W), done for every window read, so a damaged
// token file gives an error naming it, never an embedding row out of range.
void Dataset::check_token_ids(std::uint64_t p) const {
  const std::size_t w = static_cast<std::size_t>(window_len());
  const auto vocab = static_cast<std::uint32_t>(vocab_size_);
  const auto scan = [&](auto src) {
    for (std::size_t k = 0; k < w; ++k) {
      if (src[k] >= vocab)
        fail("{}/tokens.bin: window {} token {}: id {} outside the vocabulary [0, {})",
             dir_.string(), p, k, src[k], vocab_size_);
    }
  };
  if (wide_)
    scan(as_array<std::uint32_t>(tokens_).subspan(p * w, w));
  else
    scan(as_array<std::uint16_t>(tokens_).subspan(p * w, w));
}

std::uint64_t Dataset::physical(std::uint64_t i) const {
  require(i < windows_, "{}: window {} out of range (the dataset has {})", dir_.string(), i,
          windows_);
  const std::uint64_t p = as_array<std::uint64_t>(order_)[i];
  // open() checked order.bin; checked again where it is used, as every index read from a file.
  require(p < windows_, "{}/order.bin: entry {} is {}, outside the {} windows", dir_.string(), i, p,
          windows_);
  return p;
}

void Dataset::read_tokens(std::uint64_t i, std::span<std::int32_t> out) const {
  const std::uint64_t p = physical(i);
  const std::size_t w = static_cast<std::size_t>(window_len());
  require(out.size() == w, "read_tokens: a buffer of {} for a window of {}", out.size(), w);
  if (wide_) {
    const auto src = as_array<std::uint32_t>(tokens_).subspan(p * w, w);
    for (std::size_t k = 0; k < w; ++k)
      out[k] = static_cast<std::int32_t>(src[k]);
  } else {
    const auto src = as_array<std::uint16_t>(tokens_).subspan(p * w, w);
    for (std::size_t k = 0; k < w; ++k)
      out[k] = src[k];
  }
  check_token_ids(p);
}

std::vector<std::int32_t> Dataset::tokens(std::uint64_t i) const {
  std::vector<std::int32_t> out(static_cast<std::size_t>(window_len()));
  read_tokens(i, out);
  return out;
}

std::span<const std::uint32_t> Dataset::doc_starts(std::uint64_t i) const {
  const std::uint64_t p = physical(i);
  const auto index = as_array<std::uint64_t>(doc_index_);
  return as_array<std::uint32_t>(doc_starts_).subspan(index[p], index[p + 1] - index[p]);
}

std::span<const std::uint32_t> Dataset::loss_spans(std::uint64_t i) const {
  const std::uint64_t p = physical(i);
  const auto index = as_array<std::uint64_t>(mask_index_);
  return as_array<std::uint32_t>(mask_spans_).subspan(2 * index[p], 2 * (index[p + 1] - index[p]));
}

}  // namespace anchorctx::data
