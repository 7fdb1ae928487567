#include "anchorctx/core/hash.h"

#include <string>

#include <gtest/gtest.h>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

TEST(Hash, EmptyInputGivesTheKnownXxh3_128) {
  // xxh128sum of an empty file (xxhash's canonical big-endian hex).
  EXPECT_EQ(hash_bytes_hex(""), "99aa06d3014798d86001c324468d497f");
}

TEST(Hash, HexIsLowercase32DigitsAndContentSensitive) {
  const std::string a = hash_bytes_hex("anchor");
  ASSERT_EQ(a.size(), 32u);
  for (const char c : a)
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << a;
  EXPECT_EQ(a, hash_bytes_hex("anchor"));
  EXPECT_NE(a, hash_bytes_hex("anchos"));
  EXPECT_NE(hash_bytes_hex(std::string_view("\0", 1)), hash_bytes_hex(""));
}

TEST(Hash, FileHashEqualsBytesHashAcrossChunkBoundaries) {
  test::TempDir dir;
  // Beyond the 1 MiB read chunk, and not a multiple of it.
  std::string bytes((1 << 20) * 2 + 12345, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  for (const std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{1} << 20, bytes.size()}) {
    const std::string_view part(bytes.data(), size);
    const std::string path = dir.write("f.bin", part);
    EXPECT_EQ(hash_file_hex(path), hash_bytes_hex(part)) << size << " bytes";
  }
}

TEST(Hash, MissingFileThrowsNamingIt) {
  test::TempDir dir;
  const std::string path = (dir.path() / "absent.bin").string();
  try {
    hash_file_hex(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  // A folder opens but does not read.
  EXPECT_THROW(hash_file_hex(dir.path().string()), Error);
}

}  // namespace
}  // namespace anchorctx::core
