// Helpers shared by the tokenizer tests: temporary files and the optional real data of
// ../shared/data (present in CI, absent from a user's clone: tests that need it skip).
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace anchorctx::test {

// A fresh folder under the system's temporary folder, removed with everything in it when
// the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            fmt::format("anchorctx-test-{}-{}", ::getpid(), counter++);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `bytes` to the file `name` in the folder; returns its path.
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream out(file, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(out.good()) << "cannot write " << file;
    return file.string();
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The path of `relative` inside ../shared/data, or "" when that file is absent.
inline std::string shared_data_file(std::string_view relative) {
#ifdef ANCHORCTX_SHARED_DATA_DIR
  const std::filesystem::path path = std::filesystem::path(ANCHORCTX_SHARED_DATA_DIR) / relative;
  if (std::filesystem::exists(path)) return path.string();
#endif
  return {};
}

}  // namespace anchorctx::test

// Sets `var` to the path of a shared data file, or skips the test saying what is missing.
#define ANCHORCTX_SHARED_DATA_OR_SKIP(var, relative)                     \
  const std::string var = ::anchorctx::test::shared_data_file(relative); \
  if (var.empty())                                                       \
  GTEST_SKIP() << "real data ../shared/data/" << (relative)              \
               << " is absent (it sits beside the checkout in CI); this test needs it"
