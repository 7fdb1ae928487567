// The optional real data of ../shared/data (tokenizers, models, corpora): present in CI, absent
// from a user's clone, so the tests that need it skip.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace anchorctx::test {

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
