// safetensors: the weight files of HuggingFace model folders, read memory-mapped and written by
// the project.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str:
// str}}, then the data section; offsets are relative to the data section.
//
// The reader is hardened against hostile files: the header length, every dtype, shape and offset
// are checked against the file size before any tensor byte is touched (with overflow-safe
// arithmetic), and tensors must tile the data section exactly as the reference implementation
// demands (no overlap, no gap, no trailing bytes). Every error is an anchorctx::Error naming the
// file and, where there is one, the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::model {

// The element types the project reads. Other safetensors dtypes (F64, I64, U8, F8_*, ...) are
// rejected at open with an error naming the tensor and the dtype.
enum class TensorDtype { f32, bf16, f16 };

std::size_t dtype_size(TensorDtype dtype);
std::string_view to_string(TensorDtype dtype);  // "F32", "BF16", "F16" (safetensors' spelling)
std::optional<TensorDtype> parse_tensor_dtype(std::string_view name);

// Where one tensor lives. `begin`/`end` are absolute byte offsets in the file `path`.
struct TensorInfo {
  std::string name;
  TensorDtype dtype = TensorDtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::size_t file = 0;  // index into SafetensorsReader::files()

  std::int64_t numel() const;  // product of shape (1 for a scalar)
  std::uint64_t nbytes() const { return end - begin; }
};

// A tensor's bytes inside the mapping, valid while the reader lives. `bytes` is not necessarily
// aligned for its dtype in files written elsewhere: copy (or use read_f32) rather than casting.
struct TensorView {
  const TensorInfo* info = nullptr;
  std::span<const std::byte> bytes;

  const std::string& name() const { return info->name; }
  TensorDtype dtype() const { return info->dtype; }
  const std::vector<std::int64_t>& shape() const { return info->shape; }
  std::int64_t numel() const { return info->numel(); }
};

// One .safetensors file, or a model folder (model.safetensors, or the shards listed in
// model.safetensors.index.json), mapped read-only. Move-only.
class SafetensorsReader {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a folder holding either
  // (model.safetensors preferred, as transformers does). Shard names in an index must be plain
  // file names in the same folder; every tensor of the weight_map must be in the shard it names;
  // a tensor in two shards is an error. Throws anchorctx::Error.
  static SafetensorsReader open(const std::filesystem::path& path);

  SafetensorsReader();
  SafetensorsReader(SafetensorsReader&&) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&&) noexcept;
  ~SafetensorsReader();

  // The files read (one, or the shards in index order).
  std::vector<std::filesystem::path> files() const;
  // All tensors, sorted by name.
  const std::vector<TensorInfo>& tensors() const;
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const;
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  // Throws anchorctx::Error "<file or folder>: no tensor '<name>'" when absent.
  const TensorInfo& info(std::string_view name) const;
  TensorView view(std::string_view name) const;

  // The tensor converted to float32 (exact for every supported dtype). `out.size()` must equal
  // numel; read_f32_into throws naming the tensor otherwise.
  std::vector<float> read_f32(std::string_view name) const;
  void read_f32_into(std::string_view name, std::span<float> out) const;
  // Same, and checks the shape first ("tensor 'x' in f: shape [2, 3], expected [3, 2]").
  std::vector<float> read_f32(std::string_view name, std::span<const std::int64_t> shape) const;

  // `__metadata__` of the (first) file, e.g. {"format": "pt"}.
  const std::map<std::string, std::string>& metadata() const;
  // What errors name: the file, or the folder for a sharded checkpoint.
  const std::string& source() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Converts `count` raw elements of `dtype` (little-endian, any alignment) to float32.
void convert_to_f32(TensorDtype dtype, std::span<const std::byte> bytes, std::span<float> out);

// A tensor to write: its bytes in `dtype`, either borrowed (must outlive the write) or owned.
struct TensorData {
  std::string name;
  TensorDtype dtype = TensorDtype::f32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> borrowed;
  std::vector<std::byte> owned;

  std::span<const std::byte> bytes() const {
    return owned.empty() ? borrowed : std::span<const std::byte>(owned);
  }
};

// A tensor from float32 values, stored as `stored`: F32 borrows `values` (keep them alive until
// the write), BF16 and F16 own the converted bytes (round to nearest even; BF16 bit-identical to
// torch's .to(torch.bfloat16)). Throws when values.size() does not match the shape.
TensorData tensor_from_f32(std::string name, std::vector<std::int64_t> shape,
                           std::span<const float> values, TensorDtype stored = TensorDtype::f32);

// Writes one .safetensors file atomically (temporary file beside it, fsync, rename). Tensors are
// laid out by dtype size, largest first, then by name (as the reference writer does), so every
// tensor is aligned for its dtype in a mapping; the header is padded with spaces to a multiple of
// 8 bytes. `metadata` gets {"format": "pt"} unless it names a format (transformers requires
// "pt"). Throws anchorctx::Error on duplicate names, a size/shape mismatch, or an I/O failure.
void write_safetensors(const std::filesystem::path& path, std::span<const TensorData> tensors,
                       const std::map<std::string, std::string>& metadata = {});

struct WriteModelOptions {
  // 0: a single model.safetensors. Otherwise tensors go, in write order, to shards of at most
  // this many bytes of tensor data (a single larger tensor gets a shard of its own), named
  // model-00001-of-0000N.safetensors, plus model.safetensors.index.json ({"metadata":
  // {"total_size"}, "weight_map"}), as transformers' save_pretrained does. One shard is written
  // as model.safetensors.
  std::uint64_t max_shard_bytes = 0;
  std::map<std::string, std::string> metadata;
};

// Writes a model folder's weights into existing folder `dir`; removes weight files of the other
// layout left there (a stale model.safetensors would shadow an index). Returns the file names
// written. Each file is atomic; for an all-or-nothing folder write into a core::AtomicDir.
std::vector<std::string> write_model_safetensors(const std::filesystem::path& dir,
                                                 std::span<const TensorData> tensors,
                                                 const WriteModelOptions& options = {});

}  // namespace anchorctx::model
