// safetensors: the hardened reader (validate everything against the file size, then map) and the
// writer (reference layout: dtype size descending then name, header padded with spaces to 8).
#include "anchorctx/model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/json_file.h"
#include "anchorctx/core/mapped_file.h"

namespace anchorctx::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps");

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// Dtypes of the format that the project does not read: named in the error rather than "unknown".
bool is_known_unsupported(std::string_view name) {
  static const std::set<std::string_view> names = {
      "BOOL",    "U8",      "I8",  "I16",         "U16",         "I32",     "U32",
      "I64",     "U64",     "F64", "F8_E4M3",     "F8_E5M2",     "F8_E8M0", "F4",
      "F6_E2M3", "F6_E3M2", "C64", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "E8M0"};
  return names.contains(name);
}

// a * b, or false on overflow.
bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

// A short, bounded description of a JSON value for errors (never dump a hostile value whole).
std::string describe(const json& v) {
  if (v.is_primitive()) {
    std::string s = v.dump(-1, ' ', true, json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 40) + "...";
    return s;
  }
  return std::string("a JSON ") + v.type_name();
}

std::uint64_t json_uint(const json& v, const std::string& where, const char* what) {
  if (!v.is_number_integer())
    fail("{}: {} must be a non-negative integer, got {}", where, what, describe(v));
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  const std::int64_t i = v.get<std::int64_t>();
  if (i < 0) fail("{}: {} must be a non-negative integer, got {}", where, what, i);
  return static_cast<std::uint64_t>(i);
}

std::string shape_string(std::span<const std::int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

struct FileEntry {
  core::MappedFile map;
  std::map<std::string, std::string> metadata;
};

// Parses and validates the header of one mapped file; appends its tensors (absolute offsets).
void parse_file(const core::MappedFile& map, std::size_t file_index, std::vector<TensorInfo>& out,
                std::map<std::string, std::string>& metadata) {
  const std::string& path = map.path();
  const std::uint64_t size = map.size();
  if (size < 8)
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path, size);
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, map.data(), 8);
  if (header_len > size - 8)
    fail("{}: header length {} exceeds the file ({} bytes after the length)", path, header_len,
         size - 8);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} is above the {}-byte limit", path, header_len, kMaxHeaderBytes);
  if (header_len < 2) fail("{}: header length {} is too small for a JSON object", path, header_len);
  const char* header = reinterpret_cast<const char*>(map.data()) + 8;
  if (header[0] != '{') fail("{}: header does not start with '{{'", path);
  const std::uint64_t data_start = 8 + header_len;
  const std::uint64_t data_size = size - data_start;

  const json root = core::parse_json(std::string_view(header, header_len), path + ": header");
  if (!root.is_object()) fail("{}: header is not a JSON object", path);

  struct Range {
    std::uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ must be an object of strings", path);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail("{}: __metadata__ '{}' must be a string, got {}", path, k, describe(v));
        metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = fmt::format("{}: tensor '{}'", path, name);
    if (!entry.is_object()) fail("{}: expected an object, got {}", where, describe(entry));
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || sh == entry.end() || off == entry.end())
      fail("{}: needs dtype, shape and data_offsets", where);
    if (!dt->is_string()) fail("{}: dtype must be a string, got {}", where, describe(*dt));
    const std::string dtype_name = dt->get<std::string>();
    const auto dtype = parse_tensor_dtype(dtype_name);
    if (!dtype) {
      if (is_known_unsupported(dtype_name))
        fail("{}: dtype {} is not supported (F32, BF16 or F16)", where, dtype_name);
      fail("{}: unknown dtype '{}'", where, describe(*dt));
    }
    if (!sh->is_array()) fail("{}: shape must be an array, got {}", where, describe(*sh));
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    info.file = file_index;
    std::uint64_t numel = 1;
    for (const json& d : *sh) {
      const std::uint64_t dim = json_uint(d, where, "every shape dimension");
      // Each dimension, and the element count, must fit the file: no shape can describe more
      // elements than the file has bytes (zero-sized dimensions aside).
      if (dim > size) fail("{}: dimension {} is larger than the file", where, dim);
      // Every partial product must fit int64, the type TensorInfo::numel() multiplies in.
      if (!checked_mul(numel, dim, numel) ||
          numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail("{}: shape overflows", where);
      info.shape.push_back(static_cast<std::int64_t>(dim));
    }
    std::uint64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size(*dtype), nbytes))
      fail("{}: shape {} overflows", where, shape_string(info.shape));
    if (!off->is_array() || off->size() != 2)
      fail("{}: data_offsets must be [begin, end], got {}", where, describe(*off));
    const std::uint64_t begin = json_uint((*off)[0], where, "data_offsets");
    const std::uint64_t end = json_uint((*off)[1], where, "data_offsets");
    if (begin > end) fail("{}: data_offsets [{}, {}] run backwards", where, begin, end);
    if (end > data_size)
      fail("{}: data_offsets [{}, {}] beyond the data section ({} bytes)", where, begin, end,
           data_size);
    if (end - begin != nbytes)
      fail("{}: data_offsets [{}, {}] hold {} bytes but {} shape {} needs {}", where, begin, end,
           end - begin, dtype_name, shape_string(info.shape), nbytes);
    info.begin = data_start + begin;
    info.end = data_start + end;
    ranges.push_back({begin, end, out.size()});
    out.push_back(std::move(info));
  }

  // The tensors must tile the data section: sorted by offset, each starts where the previous
  // ended, and the last ends at the end of the file (what the reference validates).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  for (const Range& r : ranges) {
    const std::string& name = out[r.index].name;
    if (r.begin < cursor)
      fail("{}: tensor '{}' at [{}, {}] overlaps the previous tensor (ending at {})", path, name,
           r.begin, r.end, cursor);
    if (r.begin > cursor)
      fail("{}: tensor '{}' at [{}, {}] leaves a gap after offset {}", path, name, r.begin, r.end,
           cursor);
    cursor = r.end;
  }
  if (cursor != data_size)
    fail("{}: tensors cover {} bytes of the {}-byte data section", path, cursor, data_size);
}

// A shard name from an index must be a plain file name: never a path out of the folder.
void check_shard_name(const std::string& name, const std::string& index_path) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    fail("{}: shard name '{}' is not a plain file name", index_path, name);
}

std::uint16_t float_to_f16_bits(float value) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7FFFFFFFu;
  if (x > 0x7F800000u) return sign | 0x7E00u;                    // NaN
  if (x >= 0x477FF000u) return sign | 0x7C00u;                   // rounds to infinity (>= 65520)
  if (x < 0x38800000u) {                                         // below 2^-14: subnormal or zero
    const float scaled = std::bit_cast<float>(x) * 16777216.0f;  // exact: times 2^24
    return sign | static_cast<std::uint16_t>(std::nearbyint(scaled));  // ties to even
  }
  x += 0xFFFu + ((x >> 13) & 1u);  // round to nearest even on the 13 dropped bits
  return sign | static_cast<std::uint16_t>((x - 0x38000000u) >> 13);
}

float f16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal, exact
    return sign ? -v : v;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

}  // namespace

std::size_t dtype_size(TensorDtype dtype) {
  return dtype == TensorDtype::f32 ? 4 : 2;
}

std::string_view to_string(TensorDtype dtype) {
  switch (dtype) {
    case TensorDtype::f32:
      return "F32";
    case TensorDtype::bf16:
      return "BF16";
    case TensorDtype::f16:
      return "F16";
  }
  return "F32";
}

std::optional<TensorDtype> parse_tensor_dtype(std::string_view name) {
  if (name == "F32") return TensorDtype::f32;
  if (name == "BF16") return TensorDtype::bf16;
  if (name == "F16") return TensorDtype::f16;
  return std::nullopt;
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (const std::int64_t d : shape)
    n *= d;  // validated at open: cannot overflow
  return n;
}

void convert_to_f32(TensorDtype dtype, std::span<const std::byte> bytes, std::span<float> out) {
  require(bytes.size() == out.size() * dtype_size(dtype),
          "convert_to_f32: {} bytes of {} for {} floats", bytes.size(), to_string(dtype),
          out.size());
  if (dtype == TensorDtype::f32) {
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());  // any alignment
    return;
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::uint16_t bits = 0;
    std::memcpy(&bits, bytes.data() + 2 * i, 2);
    out[i] = dtype == TensorDtype::bf16 ? core::bf16_bits_to_float(bits) : f16_bits_to_float(bits);
  }
}

// ---------------------------------------------------------------------------------------------
// Reader

struct SafetensorsReader::State {
  std::string source;
  std::vector<FileEntry> files;
  std::vector<TensorInfo> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
};

SafetensorsReader::SafetensorsReader() : state_(std::make_unique<State>()) {}
SafetensorsReader::SafetensorsReader(SafetensorsReader&&) noexcept = default;
SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&&) noexcept = default;
SafetensorsReader::~SafetensorsReader() = default;

SafetensorsReader SafetensorsReader::open(const fs::path& path) {
  SafetensorsReader reader;
  State& st = *reader.state_;
  std::error_code ec;
  fs::path file = path;
  fs::path index;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / kSingleName, ec))
      file = path / kSingleName;
    else if (fs::exists(path / kIndexName, ec))
      index = path / kIndexName;
    else
      fail("{}: no {} or {} in the folder", path.string(), kSingleName, kIndexName);
  } else if (path.filename().string().ends_with(".index.json")) {
    index = path;
  }

  if (index.empty()) {
    st.source = file.string();
    st.files.push_back({core::MappedFile::open(file.string()), {}});
    parse_file(st.files[0].map, 0, st.tensors, st.files[0].metadata);
    st.metadata = st.files[0].metadata;
  } else {
    const std::string index_path = index.string();
    st.source = index.parent_path().empty() ? std::string(".") : index.parent_path().string();
    const json root = core::read_json_file(index, "the safetensors index");
    if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object())
      fail("{}: expected an object with a 'weight_map' object", index_path);
    // Shards in order of first appearance in the weight_map.
    std::vector<std::string> shard_names;
    std::map<std::string, std::size_t> shard_index;
    std::vector<std::pair<std::string, std::size_t>> expected;
    for (const auto& [tensor, shard] : root["weight_map"].items()) {
      if (!shard.is_string())
        fail("{}: weight_map '{}' must name a file, got {}", index_path, tensor, describe(shard));
      const std::string name = shard.get<std::string>();
      check_shard_name(name, index_path);
      auto [it, inserted] = shard_index.emplace(name, shard_names.size());
      if (inserted) shard_names.push_back(name);
      expected.emplace_back(tensor, it->second);
    }
    const fs::path folder = index.parent_path();
    for (std::size_t i = 0; i < shard_names.size(); ++i) {
      st.files.push_back({core::MappedFile::open((folder / shard_names[i]).string()), {}});
      parse_file(st.files[i].map, i, st.tensors, st.files[i].metadata);
    }
    if (shard_names.empty()) fail("{}: the weight_map is empty", index_path);
    if (!st.files.empty()) st.metadata = st.files[0].metadata;
    std::sort(st.tensors.begin(), st.tensors.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
    for (std::size_t i = 1; i < st.tensors.size(); ++i)
      if (st.tensors[i].name == st.tensors[i - 1].name)
        fail("{}: tensor '{}' is in two shards ({} and {})", st.source, st.tensors[i].name,
             shard_names[st.tensors[i - 1].file], shard_names[st.tensors[i].file]);
    for (const auto& [tensor, shard] : expected) {
      const TensorInfo* info = reader.find(tensor);
      if (info == nullptr)
        fail("{}: tensor '{}' is listed for {} but is not in it", index_path, tensor,
             shard_names[shard]);
      if (info->file != shard)
        fail("{}: tensor '{}' is listed for {} but is in {}", index_path, tensor,
             shard_names[shard], shard_names[info->file]);
    }
    return reader;
  }
  std::sort(st.tensors.begin(), st.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return reader;
}

std::vector<fs::path> SafetensorsReader::files() const {
  std::vector<fs::path> out;
  for (const FileEntry& f : state_->files)
    out.emplace_back(f.map.path());
  return out;
}

const std::vector<TensorInfo>& SafetensorsReader::tensors() const {
  return state_->tensors;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(state_->tensors.size());
  for (const TensorInfo& t : state_->tensors)
    out.push_back(t.name);
  return out;
}

const TensorInfo* SafetensorsReader::find(std::string_view name) const {
  const auto& ts = state_->tensors;
  const auto it =
      std::lower_bound(ts.begin(), ts.end(), name,
                       [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != ts.end() && it->name == name ? &*it : nullptr;
}

bool SafetensorsReader::contains(std::string_view name) const {
  return find(name) != nullptr;
}

const TensorInfo& SafetensorsReader::info(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) fail("{}: no tensor '{}'", state_->source, name);
  return *t;
}

TensorView SafetensorsReader::view(std::string_view name) const {
  const TensorInfo& t = info(name);
  const core::MappedFile& map = state_->files[t.file].map;
  return {&t, map.bytes().subspan(t.begin, t.end - t.begin)};  // bounds validated at open
}

void SafetensorsReader::read_f32_into(std::string_view name, std::span<float> out) const {
  const TensorView v = view(name);
  if (out.size() != static_cast<std::uint64_t>(v.numel()))
    fail("{}: tensor '{}' has {} elements, the destination {}",
         state_->files[v.info->file].map.path(), name, v.numel(), out.size());
  convert_to_f32(v.dtype(), v.bytes, out);
}

std::vector<float> SafetensorsReader::read_f32(std::string_view name) const {
  std::vector<float> out(static_cast<std::size_t>(info(name).numel()));
  read_f32_into(name, out);
  return out;
}

std::vector<float> SafetensorsReader::read_f32(std::string_view name,
                                               std::span<const std::int64_t> shape) const {
  const TensorInfo& t = info(name);
  if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
    fail("{}: tensor '{}' has shape {}, expected {}", state_->files[t.file].map.path(), name,
         shape_string(t.shape), shape_string(shape));
  return read_f32(name);
}

const std::map<std::string, std::string>& SafetensorsReader::metadata() const {
  return state_->metadata;
}

const std::string& SafetensorsReader::source() const {
  return state_->source;
}

// ---------------------------------------------------------------------------------------------
// Writer

TensorData tensor_from_f32(std::string name, std::vector<std::int64_t> shape,
                           std::span<const float> values, TensorDtype stored) {
  std::int64_t numel = 1;
  for (const std::int64_t d : shape) {
    require(d >= 0, "tensor '{}': negative dimension in shape {}", name, shape_string(shape));
    numel *= d;
  }
  require(static_cast<std::uint64_t>(numel) == values.size(), "tensor '{}': {} values for shape {}",
          name, values.size(), shape_string(shape));
  TensorData t;
  t.name = std::move(name);
  t.dtype = stored;
  t.shape = std::move(shape);
  if (stored == TensorDtype::f32) {
    t.borrowed = std::as_bytes(values);
    return t;
  }
  t.owned.resize(values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t bits = stored == TensorDtype::bf16 ? core::float_to_bf16_bits(values[i])
                                                           : float_to_f16_bits(values[i]);
    std::memcpy(t.owned.data() + 2 * i, &bits, 2);
  }
  return t;
}

void write_safetensors(const fs::path& path, std::span<const TensorData> tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string where = path.string();
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  // Largest dtype first keeps every tensor aligned to its element size (data starts 8-aligned).
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const std::size_t sa = dtype_size(tensors[a].dtype), sb = dtype_size(tensors[b].dtype);
    return sa != sb ? sa > sb : tensors[a].name < tensors[b].name;
  });

  json header = json::object();
  json meta = json::object();
  for (const auto& [k, v] : metadata)
    meta[k] = v;
  if (!meta.contains("format")) meta["format"] = "pt";
  header["__metadata__"] = meta;
  std::uint64_t offset = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const TensorData& t = tensors[order[k]];
    if (k > 0 && t.name == tensors[order[k - 1]].name)
      fail("{}: tensor '{}' given twice", where, t.name);
    if (t.name == "__metadata__") fail("{}: '__metadata__' cannot name a tensor", where);
    std::uint64_t numel = 1;
    for (const std::int64_t d : t.shape) {
      if (d < 0) fail("{}: tensor '{}' has a negative dimension", where, t.name);
      if (!checked_mul(numel, static_cast<std::uint64_t>(d), numel))
        fail("{}: tensor '{}': shape overflows", where, t.name);
    }
    std::uint64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size(t.dtype), nbytes) || nbytes != t.bytes().size())
      fail("{}: tensor '{}': {} bytes given, {} shape {} needs {} elements of {} bytes", where,
           t.name, t.bytes().size(), to_string(t.dtype), shape_string(t.shape), numel,
           dtype_size(t.dtype));
    header[t.name] = {{"dtype", std::string(to_string(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the reference pads so the data is 8-aligned
  const std::uint64_t header_len = text.size();

  core::AtomicFile out(path);
  std::byte len[8];
  std::memcpy(len, &header_len, 8);
  out.write(std::span<const std::byte>(len, 8));
  out.write(text);
  for (const std::size_t i : order)
    out.write(tensors[i].bytes());
  out.commit();
}

std::vector<std::string> write_model_safetensors(const fs::path& dir,
                                                 std::span<const TensorData> tensors,
                                                 const WriteModelOptions& options) {
  // Plan shards in the caller's order, as save_pretrained does with the state dict.
  std::vector<std::vector<TensorData>> shards(1);
  std::uint64_t shard_bytes = 0, total = 0;
  for (const TensorData& t : tensors) {
    const std::uint64_t n = t.bytes().size();
    if (options.max_shard_bytes > 0 && !shards.back().empty() &&
        shard_bytes + n > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    TensorData ref;  // a borrowing copy: the bytes stay where the caller has them
    ref.name = t.name;
    ref.dtype = t.dtype;
    ref.shape = t.shape;
    ref.borrowed = t.bytes();
    shards.back().push_back(std::move(ref));
    shard_bytes += n;
    total += n;
  }

  std::vector<std::string> written;
  std::error_code ec;
  const auto is_shard_name = [](const std::string& n) {
    return n.starts_with("model-") && n.ends_with(".safetensors") && n.find("-of-") != n.npos;
  };
  if (shards.size() == 1) {
    write_safetensors(dir / kSingleName, shards[0], options.metadata);
    written.push_back(kSingleName);
  } else {
    const std::size_t n = shards.size();
    json weight_map = json::object();
    for (std::size_t i = 0; i < n; ++i) {
      const std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
      write_safetensors(dir / name, shards[i], options.metadata);
      for (const TensorData& t : shards[i])
        weight_map[t.name] = name;
      written.push_back(name);
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    core::write_file_atomic(dir / kIndexName, index.dump(2) + "\n");
    written.push_back(kIndexName);
  }
  // Remove what the other layout (or an earlier, longer sharding) left behind: transformers
  // prefers model.safetensors over an index, so a stale one would shadow the new weights.
  const std::set<std::string> keep(written.begin(), written.end());
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (keep.contains(name)) continue;
    if (name == kSingleName || name == kIndexName || is_shard_name(name)) fs::remove(entry, ec);
  }
  return written;
}

}  // namespace anchorctx::model
