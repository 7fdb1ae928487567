// read_json_file: what is not a regular file, NUL bytes and runaway nesting are refused by name.
#include "anchorctx/core/json_file.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>

#include "anchorctx/core/error.h"
#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

namespace fs = std::filesystem;
using anchorctx::test::TempDir;

std::string refusal(const fs::path& path) {
  return anchorctx::test::error_of([&] { read_json_file(path, "a test file"); });
}

std::string write(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

TEST(JsonFile, ReadsAnObject) {
  TempDir tmp;
  // Brackets and escaped quotes inside strings are not nesting.
  const std::string path = write(tmp.path() / "a.json", R"({"a": [1, {"b": "[[[\"{{{"}]})");
  const nlohmann::json j = read_json_file(path, "a test file");
  EXPECT_EQ(j["a"][1]["b"], "[[[\"{{{");
}

TEST(JsonFile, RefusesWhatIsNotARegularFile) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "folder.json");
  EXPECT_NE(refusal(tmp.path() / "folder.json").find("folder.json: not a regular file (a folder"),
            std::string::npos);
  const fs::path fifo = tmp.path() / "fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(refusal(fifo).find("fifo.json: not a regular file (a FIFO"), std::string::npos);
  fs::create_symlink("/dev/zero", tmp.path() / "zero.json");
  EXPECT_NE(refusal(tmp.path() / "zero.json").find("not a regular file (a device"),
            std::string::npos);
  EXPECT_NE(refusal(tmp.path() / "missing.json").find("missing.json: cannot open a test file"),
            std::string::npos);
}

TEST(JsonFile, RefusesANulByteAndWhatFollowsIt) {
  TempDir tmp;
  const std::string path = write(tmp.path() / "nul.json", std::string("{\"a\": 1}\0junk", 13));
  EXPECT_NE(refusal(path).find("nul.json: not valid JSON: a NUL byte at offset 8"),
            std::string::npos)
      << refusal(path);
}

TEST(JsonFile, NestingHasALimit) {
  TempDir tmp;
  const auto nested = [](int depth) {
    return "{\"k\": " + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
  };
  EXPECT_NO_THROW(read_json_file(write(tmp.path() / "ok.json", nested(kMaxJsonDepth)), "x"));
  // 100000 levels overflowed the stack of the readers that walk the result recursively.
  const std::string deep = write(tmp.path() / "deep.json", nested(100000));
  EXPECT_NE(refusal(deep).find("deep.json: JSON nested deeper than 512 levels"), std::string::npos)
      << refusal(deep);
}

// A number beyond a double is nlohmann's out_of_range, not a parse_error: it escaped the
// file's name.
TEST(JsonFile, ANumberBeyondADoubleIsNamed) {
  TempDir tmp;
  const std::string path = write(tmp.path() / "big.json", "{\"loss\": 1e999}");
  EXPECT_NE(refusal(path).find("big.json: not valid JSON: "), std::string::npos) << refusal(path);
}

}  // namespace
}  // namespace anchorctx::core
