// MappedFile refuses what is not a regular file, by its path, without blocking on it.
#include "anchorctx/core/mapped_file.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "support/error_of.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

TEST(MappedFile, MapsARegularFile) {
  const test::TempDir dir;
  const MappedFile file = MappedFile::open(dir.write("a.bin", "abc"));
  EXPECT_EQ(file.size(), 3u);
}

// A FIFO in place of a data file used to block open(2) forever (no writer ever comes). A hang
// fails the test by CTest's timeout.
TEST(MappedFile, AFifoIsRefusedWithoutBlocking) {
  const test::TempDir dir;
  const std::string fifo = dir.file("tokens.bin");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string message = test::error_of([&] { MappedFile::open(fifo); });
  EXPECT_NE(message.find(fifo + ": not a regular file (a FIFO)"), std::string::npos) << message;
}

TEST(MappedFile, AFolderIsRefused) {
  const test::TempDir dir;
  const std::string message = test::error_of([&] { MappedFile::open(dir.path().string()); });
  EXPECT_NE(message.find("not a regular file (a folder)"), std::string::npos) << message;
}

}  // namespace
}  // namespace anchorctx::core
