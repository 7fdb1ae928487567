// AtomicFile and AtomicFileSet: a file, or a report's set of files, replaced whole or not at all.
#include "anchorctx/core/atomic_file.h"

#include <gtest/gtest.h>

#include <fstream>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

namespace fs = std::filesystem;
using anchorctx::test::read_file;
using anchorctx::test::TempDir;

std::size_t entries(const fs::path& dir) {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(AtomicFile, NothingWithoutCommit) {
  TempDir tmp;
  {
    AtomicFile file(tmp.path() / "a.txt");
    file.write("partial");
    file.sync();
  }
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

TEST(AtomicFileSet, AFailureWhileStagingLeavesTheOldSetWhole) {
  TempDir tmp;
  std::ofstream(tmp.path() / "report.md") << "old md";
  std::ofstream(tmp.path() / "report.json") << "old json";
  {
    AtomicFileSet files(tmp.path());
    files.add("report.md", "new md");
    // The second file cannot be created (its folder is missing), as a full disk fails a write.
    EXPECT_THROW(files.add("missing/plot.svg", "<svg/>"), Error);
  }
  EXPECT_EQ(read_file((tmp.path() / "report.md").string()), "old md");
  EXPECT_EQ(read_file((tmp.path() / "report.json").string()), "old json");
  EXPECT_EQ(entries(tmp.path()), 2u);  // no staged temporary left behind
}

TEST(AtomicFileSet, CommitReplacesAllAndRemovesOwnedFilesItLacks) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "plots");
  std::ofstream(tmp.path() / "report.json") << "old";
  std::ofstream(tmp.path() / "heatmap.png") << "an older report's plot";
  std::ofstream(tmp.path() / "notes.txt") << "the user's";
  AtomicFileSet files(tmp.path());
  files.add("plots/loss.svg", "<svg/>");
  files.add("report.json", "new");
  EXPECT_EQ(read_file((tmp.path() / "report.json").string()), "old");  // staged, not yet placed
  files.commit({"heatmap.png", "plots/loss.svg", "never_written.svg"});
  EXPECT_EQ(read_file((tmp.path() / "report.json").string()), "new");
  EXPECT_EQ(read_file((tmp.path() / "plots" / "loss.svg").string()), "<svg/>");
  EXPECT_FALSE(fs::exists(tmp.path() / "heatmap.png"));
  EXPECT_EQ(read_file((tmp.path() / "notes.txt").string()), "the user's");
  EXPECT_EQ(entries(tmp.path()), 3u);  // plots/, report.json, notes.txt
  EXPECT_EQ(entries(tmp.path() / "plots"), 1u);
}

TEST(CopyFileAtomic, CopiesWholeAndRefusesWhatIsNoFile) {
  TempDir tmp;
  const std::string big(5 << 20, 'x');  // more than one 4 MiB read
  std::ofstream(tmp.path() / "from.bin", std::ios::binary) << big;
  std::ofstream(tmp.path() / "to.bin") << "old";
  copy_file_atomic(tmp.path() / "from.bin", tmp.path() / "to.bin");
  EXPECT_EQ(read_file((tmp.path() / "to.bin").string()), big);
  fs::create_directories(tmp.path() / "folder");
  try {
    copy_file_atomic(tmp.path() / "folder", tmp.path() / "to.bin");
    ADD_FAILURE() << "a folder was copied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("folder: not a regular file to copy"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_file((tmp.path() / "to.bin").string()), big);
  EXPECT_EQ(entries(tmp.path()), 3u);  // from.bin, to.bin, folder: no temporary left
}

}  // namespace
}  // namespace anchorctx::core
