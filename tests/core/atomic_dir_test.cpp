// AtomicDir, MappedFile and Progress: the file-system helpers under the dataset writer.
#include "anchorctx/core/atomic_dir.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "anchorctx/core/atomic_file.h"
#include "anchorctx/core/error.h"
#include "anchorctx/core/mapped_file.h"
#include "anchorctx/core/progress.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

namespace fs = std::filesystem;
using anchorctx::test::TempDir;

TEST(AtomicDir, InvisibleUntilCommitted) {
  TempDir tmp;
  const fs::path out = tmp.path() / "result";
  {
    AtomicDir dir(out);
    EXPECT_EQ(dir.path().parent_path(), tmp.path());
    EXPECT_TRUE(dir.path().filename().string().starts_with(".result.tmp-"));
    std::ofstream(dir.path() / "a.txt") << "hello";
    EXPECT_FALSE(fs::exists(out));
    dir.commit();
    EXPECT_TRUE(dir.committed());
  }
  EXPECT_EQ(anchorctx::test::read_file((out / "a.txt").string()), "hello");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(AtomicDir, RemovedWithoutCommit) {
  TempDir tmp;
  {
    AtomicDir dir(tmp.path() / "result");
    std::ofstream(dir.path() / "a.txt") << "partial";
  }
  EXPECT_TRUE(fs::is_empty(tmp.path()));
}

TEST(AtomicDir, ExistingTargetNeedsReplace) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "result");
  std::ofstream(tmp.path() / "result" / "old.txt") << "old";
  EXPECT_THROW(AtomicDir(tmp.path() / "result"), Error);
  {
    AtomicDir dir(tmp.path() / "result", true);
    std::ofstream(dir.path() / "new.txt") << "new";
    dir.commit();
  }
  EXPECT_TRUE(fs::exists(tmp.path() / "result" / "new.txt"));
  EXPECT_FALSE(fs::exists(tmp.path() / "result" / "old.txt"));
}

// The pid of a process that has ended (forked, exited and reaped).
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

// A killed writer's hidden folder is swept by the next writer of the same name; a live
// writer's, and other names', are left alone (issue 11: a killed pack's stayed forever).
TEST(AtomicDir, SweepsADeadWritersTemporaryFolder) {
  TempDir tmp;
  const std::string dead = std::to_string(dead_pid());
  const std::string live = std::to_string(::getppid());
  for (const std::string& name : {".result.tmp-" + dead + "-0", ".result.tmp-" + dead + "-3-old",
                                  ".result.tmp-" + live + "-0", ".other.tmp-" + dead + "-0"})
    fs::create_directories(tmp.path() / name / "inside");
  {
    AtomicDir dir(tmp.path() / "result");
    dir.commit();
  }
  EXPECT_FALSE(fs::exists(tmp.path() / (".result.tmp-" + dead + "-0")));
  EXPECT_FALSE(fs::exists(tmp.path() / (".result.tmp-" + dead + "-3-old")));
  EXPECT_TRUE(fs::exists(tmp.path() / (".result.tmp-" + live + "-0")));
  EXPECT_TRUE(fs::exists(tmp.path() / (".other.tmp-" + dead + "-0")));
}

// The same for a single file's temporary (a killed convert to-llama2c left a whole model).
TEST(AtomicFile, SweepsADeadWritersTemporaryFile) {
  TempDir tmp;
  const std::string dead = std::to_string(dead_pid());
  const std::string live = std::to_string(::getppid());
  for (const std::string& name : {".x.bin.tmp-" + dead + "-0", ".x.bin.tmp-" + live + "-0"})
    std::ofstream(tmp.path() / name) << "partial";
  write_file_atomic(tmp.path() / "x.bin", "whole");
  EXPECT_FALSE(fs::exists(tmp.path() / (".x.bin.tmp-" + dead + "-0")));
  EXPECT_TRUE(fs::exists(tmp.path() / (".x.bin.tmp-" + live + "-0")));
  EXPECT_EQ(anchorctx::test::read_file((tmp.path() / "x.bin").string()), "whole");
}

TEST(MappedFile, MapsAndNamesFailures) {
  TempDir tmp;
  const auto path = tmp.write("f.bin", "abcdef");
  MappedFile f = MappedFile::open(path);
  ASSERT_EQ(f.size(), 6u);
  EXPECT_EQ(static_cast<char>(f.data()[2]), 'c');
  MappedFile moved = std::move(f);
  EXPECT_EQ(moved.size(), 6u);
  EXPECT_EQ(f.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(MappedFile::open(tmp.write("empty.bin", "")).size(), 0u);
  try {
    MappedFile::open(tmp.file("missing.bin"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin: cannot open"), std::string::npos);
  }
  EXPECT_THROW(MappedFile::open(tmp.path().string()), Error);  // a folder
}

TEST(Progress, SilentWhenQuietOrNotATerminal) {
  Progress quiet(100, true);
  EXPECT_FALSE(quiet.enabled());
  quiet.update(50, 1, 1);
  quiet.finish();
  // Under ctest stderr is a pipe or file: no bar.
  if (!::isatty(2)) {
    Progress piped(100, false);
    EXPECT_FALSE(piped.enabled());
  }
}

}  // namespace
}  // namespace anchorctx::core
