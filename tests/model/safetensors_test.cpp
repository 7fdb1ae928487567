// safetensors: round trips (F32, BF16, F16, sharded folders), the committed fixture written by the
// reference Python library, Python loading what we write (when `safetensors` is importable), and
// every malformed file ending in an anchorctx::Error that names the file and the tensor.
#include "anchorctx/model/safetensors.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "anchorctx/core/bf16.h"
#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::model {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;

fs::path fixtures_dir() {
  return fs::path(ANCHORCTX_TESTS_DIR) / "data" / "fixtures";
}

// A safetensors file from a header text (written as is, no padding) and data bytes.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// The message of the error that opening `path` gives ("" if it opens).
std::string open_error(const std::string& path) {
  try {
    SafetensorsReader::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<float> iota(std::size_t n, float scale) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = scale * (static_cast<float>(i) - 3.3f);
  return v;
}

TEST(Safetensors, RoundTripF32Bf16F16) {
  const TempDir dir;
  const std::vector<float> a = iota(6, 0.37f);
  const std::vector<float> b = iota(12, -1.1f);
  const std::vector<float> c = {0.5f, -2.0f, 65504.0f, 1e-7f, 3.14159f};
  std::vector<TensorData> tensors;
  tensors.push_back(tensor_from_f32("model.a", {2, 3}, a));
  tensors.push_back(tensor_from_f32("model.b", {3, 4}, b, TensorDtype::bf16));
  tensors.push_back(tensor_from_f32("half", {5}, c, TensorDtype::f16));
  tensors.push_back(tensor_from_f32("odd_bf16", {1}, std::span(a).first(1), TensorDtype::bf16));
  tensors.push_back(tensor_from_f32("scalar", {}, std::span(a).first(1)));
  tensors.push_back(tensor_from_f32("empty", {0, 4}, {}));
  const std::string path = dir.file("w.safetensors");
  write_safetensors(path, tensors, {{"step", "7"}});

  const auto r = SafetensorsReader::open(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"empty", "half", "model.a", "model.b", "odd_bf16",
                                                 "scalar"}));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("step"), "7");
  EXPECT_EQ(r.read_f32("model.a"), a);  // F32 exact
  const std::vector<float> got_b = r.read_f32("model.b", std::vector<std::int64_t>{3, 4});
  for (std::size_t i = 0; i < b.size(); ++i)
    EXPECT_EQ(got_b[i], core::round_to_bf16(b[i]));
  const std::vector<float> got_c = r.read_f32("half");
  EXPECT_EQ(got_c[0], 0.5f);
  EXPECT_EQ(got_c[1], -2.0f);
  EXPECT_EQ(got_c[2], 65504.0f);
  EXPECT_NEAR(got_c[3], 1e-7f, 3e-8f);  // a subnormal half
  EXPECT_NEAR(got_c[4], 3.14159f, 1e-3f);
  EXPECT_EQ(r.read_f32("scalar"), std::vector<float>{a[0]});
  EXPECT_TRUE(r.info("scalar").shape.empty());
  EXPECT_TRUE(r.read_f32("empty").empty());
  EXPECT_EQ(r.view("model.b").dtype(), TensorDtype::bf16);
  EXPECT_EQ(r.view("model.b").bytes.size(), 24u);

  // Layout: header padded to 8, F32 first so that every tensor is aligned for its dtype.
  const std::string raw = test::read_file(path);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  for (const TensorInfo& t : r.tensors())
    EXPECT_EQ(t.begin % dtype_size(t.dtype), 0u) << t.name;
  EXPECT_LT(r.info("model.a").begin, r.info("model.b").begin);

  // Errors that name the tensor.
  EXPECT_THROW(r.view("nope"), Error);
  try {
    r.read_f32("model.a", std::vector<std::int64_t>{3, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.a' has shape [2, 3], expected [3, 2]"),
              std::string::npos)
        << e.what();
  }
  std::vector<float> small(2);
  EXPECT_THROW(r.read_f32_into("model.a", small), Error);
}

TEST(Safetensors, Bf16RoundingMatchesTorch) {
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even wins (1.0); NaN becomes 0x7FC0.
  const std::vector<float> v = {1.00390625f, 1.01171875f, std::nanf("")};
  const TensorData t = tensor_from_f32("x", {3}, v, TensorDtype::bf16);
  std::uint16_t bits[3];
  std::memcpy(bits, t.bytes().data(), 6);
  EXPECT_EQ(bits[0], 0x3F80);
  EXPECT_EQ(bits[1], 0x3F82);
  EXPECT_EQ(bits[2], 0x7FC0);
}

TEST(Safetensors, F16ConversionIsExactBothWays) {
  // Every finite half converts to float and back to the same bits.
  std::vector<std::uint16_t> all;
  for (std::uint32_t h = 0; h < 0x10000; ++h)
    if ((h & 0x7C00) != 0x7C00) all.push_back(static_cast<std::uint16_t>(h));
  std::vector<float> f(all.size());
  convert_to_f32(TensorDtype::f16, std::as_bytes(std::span(all)), f);
  const TensorData back =
      tensor_from_f32("h", {static_cast<std::int64_t>(f.size())}, f, TensorDtype::f16);
  ASSERT_EQ(back.bytes().size(), all.size() * 2);
  EXPECT_EQ(std::memcmp(back.bytes().data(), all.data(), back.bytes().size()), 0);
  EXPECT_EQ(f[0x3C00], 1.0f);
  EXPECT_EQ(f[0x0001], std::ldexp(1.0f, -24));
  // Overflow to infinity, ties to even.
  const std::vector<float> edge = {65520.0f, 1.0f + 1.0f / 2048.0f};
  const TensorData e = tensor_from_f32("e", {2}, edge, TensorDtype::f16);
  std::uint16_t bits[2];
  std::memcpy(bits, e.bytes().data(), 4);
  EXPECT_EQ(bits[0], 0x7C00);
  EXPECT_EQ(bits[1], 0x3C00);
}

TEST(Safetensors, WriterRejectsBadTensors) {
  const TempDir dir;
  const std::vector<float> a = iota(4, 1.0f);
  std::vector<TensorData> dup = {tensor_from_f32("x", {4}, a), tensor_from_f32("x", {2, 2}, a)};
  EXPECT_THROW(write_safetensors(dir.file("d.safetensors"), dup), Error);
  EXPECT_THROW(tensor_from_f32("y", {3}, a), Error);
  TensorData wrong = tensor_from_f32("z", {4}, a);
  wrong.shape = {5};
  std::vector<TensorData> bad = {wrong};
  EXPECT_THROW(write_safetensors(dir.file("b.safetensors"), bad), Error);
  // Nothing was left behind, not even a temporary file.
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Safetensors, ShardedRoundTrip) {
  const TempDir dir;
  std::vector<std::vector<float>> values;
  for (int i = 0; i < 5; ++i)
    values.push_back(iota(100 + 10 * i, 0.01f * (i + 1)));
  std::vector<TensorData> tensors;
  for (int i = 0; i < 5; ++i)
    tensors.push_back(tensor_from_f32(fmt::format("model.layers.{}.w", i),
                                      {static_cast<std::int64_t>(values[i].size())}, values[i],
                                      i % 2 ? TensorDtype::bf16 : TensorDtype::f32));
  // A stale single file must go: transformers would prefer it over the index.
  write_model_safetensors(dir.path(), tensors);
  ASSERT_TRUE(fs::exists(dir.path() / "model.safetensors"));

  WriteModelOptions options;
  options.max_shard_bytes = 600;
  const auto files = write_model_safetensors(dir.path(), tensors, options);
  EXPECT_FALSE(fs::exists(dir.path() / "model.safetensors"));
  ASSERT_GE(files.size(), 3u);
  EXPECT_EQ(files.front(), fmt::format("model-00001-of-{:05d}.safetensors", files.size() - 1));
  EXPECT_EQ(files.back(), "model.safetensors.index.json");
  const json index = json::parse(test::read_file((dir.path() / files.back()).string()));
  std::uint64_t total = 0;
  for (const TensorData& t : tensors)
    total += t.bytes().size();
  EXPECT_EQ(index["metadata"]["total_size"].get<std::uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), 5u);

  for (const fs::path& open_path : {dir.path(), dir.path() / "model.safetensors.index.json"}) {
    const auto r = SafetensorsReader::open(open_path);
    EXPECT_EQ(r.files().size(), files.size() - 1);
    EXPECT_EQ(r.tensors().size(), 5u);
    for (int i = 0; i < 5; ++i) {
      const std::vector<float> got = r.read_f32(fmt::format("model.layers.{}.w", i));
      ASSERT_EQ(got.size(), values[i].size());
      for (std::size_t k = 0; k < got.size(); ++k)
        EXPECT_EQ(got[k], i % 2 ? core::round_to_bf16(values[i][k]) : values[i][k]);
    }
  }

  // And back to one file: the shards and the index go.
  write_model_safetensors(dir.path(), tensors);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path()))
    ++entries;
  EXPECT_EQ(entries, 1);
  EXPECT_EQ(SafetensorsReader::open(dir.path()).tensors().size(), 5u);
}

TEST(Safetensors, ReadsTheReferenceFixture) {
  const fs::path path = fixtures_dir() / "st_small.safetensors";
  const json expected =
      json::parse(test::read_file((fixtures_dir() / "st_small_expected.json").string()));
  const auto r = SafetensorsReader::open(path);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("source"), "make_safetensors_fixtures.py");
  ASSERT_EQ(r.tensors().size(), expected["tensors"].size());
  for (const auto& [name, want] : expected["tensors"].items()) {
    SCOPED_TRACE(name);
    const TensorView v = r.view(name);
    EXPECT_EQ(std::string(to_string(v.dtype())), want["dtype"].get<std::string>());
    EXPECT_EQ(v.shape(), want["shape"].get<std::vector<std::int64_t>>());
    const std::vector<float> f = r.read_f32(name);
    const auto bits = want["bits"].get<std::vector<std::uint32_t>>();
    ASSERT_EQ(f.size(), bits.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      const std::uint32_t got = std::bit_cast<std::uint32_t>(f[i]);
      if (v.dtype() == TensorDtype::f32) {
        EXPECT_EQ(got, bits[i]) << i;
      } else if (v.dtype() == TensorDtype::bf16) {
        EXPECT_EQ(got, bits[i] << 16) << i;
      } else {  // F16: numpy's own float32 conversion
        EXPECT_EQ(got, want["f32_bits"][i].get<std::uint32_t>()) << i;
      }
    }
  }
}

// Python's `safetensors` loads what we write. Runs only where the package is importable
// (ANCHORCTX_PYTHON, else python3): it is a tools-side dependency, never the build's.
TEST(Safetensors, PythonLoadsWhatWeWrite) {
  const char* env = std::getenv("ANCHORCTX_PYTHON");
  const std::string python = env && *env ? env : "python3";
  if (std::system((python + " -c 'import safetensors, numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import safetensors and numpy";
  const TempDir dir;
  const std::vector<float> a = iota(24, 0.173f), b = iota(7, -3.7f), c = iota(3, 0.5f);
  std::vector<TensorData> tensors;
  tensors.push_back(tensor_from_f32("model.embed_tokens.weight", {6, 4}, a));
  tensors.push_back(tensor_from_f32("model.norm.weight", {7}, b, TensorDtype::bf16));
  tensors.push_back(tensor_from_f32("lm_head.weight", {3, 1}, c, TensorDtype::f16));
  tensors.push_back(tensor_from_f32("empty", {0}, {}));
  const std::string path = dir.file("ours.safetensors");
  write_safetensors(path, tensors, {{"note", "anchorctx"}});
  json expected = {{"metadata", {{"format", "pt"}, {"note", "anchorctx"}}},
                   {"tensors", json::object()}};
  for (const TensorData& t : tensors) {
    std::string hex;
    for (const std::byte x : t.bytes())
      hex += fmt::format("{:02x}", static_cast<unsigned>(x));
    expected["tensors"][t.name] = {
        {"dtype", std::string(to_string(t.dtype))}, {"shape", t.shape}, {"hex", hex}};
  }
  const std::string expected_path = dir.write("expected.json", expected.dump());
  const fs::path script = fs::path(ANCHORCTX_TESTS_DIR) / "model" / "check_safetensors_load.py";
  const std::string cmd =
      fmt::format("{} '{}' '{}' '{}'", python, script.string(), path, expected_path);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// ---- malformed files ----------------------------------------------------------------------

struct Malformed {
  const char* what;
  std::string bytes;
  const char* message;           // a fragment the error must contain (beside the file name)
  const char* tensor = nullptr;  // the tensor the error must name, if any
};

std::string header_with(const std::string& tensors, std::size_t data_size) {
  return make_file("{" + tensors + "}", std::string(data_size, '\x11'));
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  const std::string good_t = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string huge_len(8, '\xff');
  huge_len += "{}";
  const std::vector<Malformed> cases = {
      {"empty file", "", "shorter than the 8-byte header length"},
      {"truncated length", std::string("\x10\0\0", 3), "shorter than the 8-byte"},
      {"header length beyond file", make_file("{}", "").substr(0, 8) + "{", "exceeds the file"},
      {"header length 2^64-1", huge_len, "exceeds the file"},
      {"truncated header",
       make_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "").substr(0, 30),
       "exceeds the file"},
      {"not an object", make_file("[1, 2]  ", ""), "does not start with '{'"},
      {"bad JSON", make_file("{\"t\": {\"dtype\": ", ""), "not valid JSON"},
      {"invalid UTF-8", make_file("{\"\xff\xfe\":{}}", ""), "not valid JSON"},
      {"offsets beyond file",
       header_with(R"("t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 8),
       "beyond the data section", "t"},
      {"offsets far beyond file",
       header_with(
           R"("t":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})",
           8),
       "beyond the data section", "t"},
      {"overlapping tensors",
       header_with(good_t + R"(,"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})", 12),
       "overlaps", "u"},
      {"gap between tensors",
       header_with(good_t + R"(,"u":{"dtype":"F32","shape":[1],"data_offsets":[12,16]})", 16),
       "leaves a gap", "u"},
      {"trailing bytes", header_with(good_t, 12), "cover 8 bytes of the 12-byte"},
      {"shape/offset mismatch",
       header_with(R"("t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8), "needs 12", "t"},
      {"bf16 size mismatch",
       header_with(R"("t":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]})", 16), "needs 8",
       "t"},
      {"offsets backwards",
       header_with(R"("t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]})", 8), "run backwards",
       "t"},
      {"unknown dtype", header_with(R"("t":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]})", 8),
       "unknown dtype", "t"},
      {"unsupported dtype",
       header_with(R"("t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]})", 8),
       "dtype I64 is not supported", "t"},
      {"dtype not a string", header_with(R"("t":{"dtype":4,"shape":[2],"data_offsets":[0,8]})", 8),
       "dtype must be a string", "t"},
      {"negative dimension",
       header_with(R"("t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", 8),
       "non-negative integer", "t"},
      {"fractional dimension",
       header_with(R"("t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", 8),
       "non-negative integer", "t"},
      {"shape overflow",
       header_with(
           R"("t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]})",
           8),
       "larger than the file", "t"},
      {"shape product overflow",
       header_with(R"("t":{"dtype":"F32","shape":[16,16,16,16,16,16,16,16,16,16,16,16,16,16,16,16,)"
                   R"(16],"data_offsets":[0,8]})",
                   8),
       "overflows", "t"},
      {"shape not an array",
       header_with(R"("t":{"dtype":"F32","shape":2,"data_offsets":[0,8]})", 8),
       "shape must be an array", "t"},
      {"three offsets", header_with(R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})", 8),
       "must be [begin, end]", "t"},
      {"missing data_offsets", header_with(R"("t":{"dtype":"F32","shape":[2]})", 8),
       "needs dtype, shape and data_offsets", "t"},
      {"entry not an object", header_with(R"("t":[1,2])", 0), "expected an object", "t"},
      {"metadata not strings", header_with(R"("__metadata__":{"format":1})", 0),
       "must be a string"},
  };
  const TempDir dir;
  for (const Malformed& m : cases) {
    SCOPED_TRACE(m.what);
    const std::string path = dir.write("bad.safetensors", m.bytes);
    const std::string error = open_error(path);
    EXPECT_NE(error.find(path), std::string::npos) << error;
    EXPECT_NE(error.find(m.message), std::string::npos) << error;
    if (m.tensor != nullptr) {
      EXPECT_NE(error.find(fmt::format("tensor '{}'", m.tensor)), std::string::npos) << error;
    }
  }
}

TEST(Safetensors, ValidEdgeCasesOpen) {
  const TempDir dir;
  // Header only, no tensors; metadata only; zero-sized tensors sharing an offset.
  EXPECT_EQ(open_error(dir.write("a.safetensors", make_file("{}", ""))), "");
  EXPECT_EQ(open_error(dir.write("b.safetensors", make_file(R"({"__metadata__":{}}   )", ""))), "");
  const std::string zeros =
      header_with(R"("a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                  R"("b":{"dtype":"BF16","shape":[3,0],"data_offsets":[0,0]},)"
                  R"("c":{"dtype":"F16","shape":[2],"data_offsets":[0,4]})",
                  4);
  const auto r = SafetensorsReader::open(dir.write("c.safetensors", zeros));
  EXPECT_EQ(r.tensors().size(), 3u);
  EXPECT_TRUE(r.read_f32("b").empty());
}

TEST(Safetensors, MalformedFoldersAndIndexes) {
  const TempDir dir;
  const std::vector<float> a = iota(4, 1.0f);
  std::vector<TensorData> one = {tensor_from_f32("x", {4}, a)};
  std::vector<TensorData> two = {tensor_from_f32("y", {4}, a)};
  write_safetensors(dir.path() / "s1.safetensors", one);
  write_safetensors(dir.path() / "s2.safetensors", two);
  const auto with_index = [&](const std::string& text) {
    return open_error(dir.write("model.safetensors.index.json", text));
  };
  EXPECT_NE(open_error(dir.file("sub")).find("cannot open"), std::string::npos);
  fs::create_directories(dir.path() / "sub");
  EXPECT_NE(open_error(dir.file("sub")).find("no model.safetensors"), std::string::npos);
  EXPECT_NE(with_index("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": []})").find("'weight_map' object"), std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {}})").find("empty"), std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"x": "../s1.safetensors"}})").find("plain file name"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"x": 3}})").find("must name a file"), std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"x": "s1.safetensors", "z": "s2.safetensors"}})")
                .find("tensor 'z' is listed for s2.safetensors but is not in it"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"x": "s2.safetensors", "y": "s1.safetensors"}})")
                .find("tensor 'x' is listed for s2.safetensors but is in s1.safetensors"),
            std::string::npos);
  EXPECT_NE(with_index(R"({"weight_map": {"x": "missing.safetensors"}})").find("missing"),
            std::string::npos);
  write_safetensors(dir.path() / "s3.safetensors", one);
  EXPECT_NE(with_index(R"({"weight_map": {"x": "s1.safetensors", "y": "s3.safetensors"}})")
                .find("in two shards"),
            std::string::npos);
  dir.write("model.safetensors.index.json",
            R"({"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors"}})");
  EXPECT_EQ(SafetensorsReader::open(dir.path()).names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(SafetensorsReader::open(dir.path()).source(), dir.path().string());
}

}  // namespace
}  // namespace anchorctx::model
