// libFuzzer target: the safetensors reader. The input is written to a file and opened with
// SafetensorsReader::open; opening must end in a reader or an anchorctx::Error. A file that
// opens promises (safetensors.h) that every tensor can be viewed and read as float32 without
// another error, that its bytes lie inside the file, and that writing the tensors back with
// write_safetensors and reopening gives the same names, dtypes, shapes and bytes.
// Build with -DANCHORCTX_FUZZ=ON and clang; run e.g.
//   build-fuzz/safetensors_fuzz fuzz/corpus/safetensors_fuzz -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "anchorctx/core/error.h"
#include "anchorctx/model/safetensors.h"
#include "fuzz_support.h"

namespace {

using anchorctx::fuzz::finding;
namespace model = anchorctx::model;

void check_round_trip(const model::SafetensorsReader& reader) {
  static const anchorctx::fuzz::ScratchFile copy("copy.safetensors");
  std::vector<model::TensorData> tensors;
  for (const model::TensorInfo& info : reader.tensors()) {
    const model::TensorView v = reader.view(info.name);
    model::TensorData t;
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape = info.shape;
    t.borrowed = v.bytes;
    tensors.push_back(std::move(t));
  }
  const std::string& path = copy.write("");
  try {
    model::write_safetensors(path, tensors, reader.metadata());
  } catch (const anchorctx::Error& e) {
    finding("write_safetensors rejected tensors the reader accepted:", e.what());
  }
  try {
    const auto again = model::SafetensorsReader::open(path);
    if (again.tensors().size() != reader.tensors().size())
      finding("round trip changed the tensor count");
    for (const model::TensorInfo& info : reader.tensors()) {
      const model::TensorView a = reader.view(info.name);
      const model::TensorView b = again.view(info.name);
      if (a.dtype() != b.dtype() || a.shape() != b.shape() || a.bytes.size() != b.bytes.size() ||
          (!a.bytes.empty() && std::memcmp(a.bytes.data(), b.bytes.data(), a.bytes.size()) != 0))
        finding("round trip changed tensor", info.name);
    }
  } catch (const anchorctx::Error& e) {
    finding("the reader rejected what write_safetensors wrote:", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const anchorctx::fuzz::ScratchFile file("input.safetensors");
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string& path = file.write(bytes);
  model::SafetensorsReader reader;
  try {
    reader = model::SafetensorsReader::open(path);
  } catch (const anchorctx::Error&) {
    return 0;  // rejected with a message: fine
  }
  std::vector<float> values;
  for (const model::TensorInfo& info : reader.tensors()) {
    try {
      const model::TensorView v = reader.view(info.name);
      if (v.bytes.size() != info.nbytes() || info.end > size || info.begin > info.end)
        finding("a view outside the validated range:", info.name);
      if (v.bytes.size() != static_cast<std::uint64_t>(v.numel()) * model::dtype_size(v.dtype()))
        finding("bytes do not match shape and dtype:", info.name);
      values = reader.read_f32(info.name);
    } catch (const anchorctx::Error& e) {
      finding("a tensor of an opened file could not be read:", e.what());
    }
  }
  check_round_trip(reader);
  return 0;
}
