// One writer per folder (core/folder_lock.h): a second holder is refused with the first one's
// pid, in this process or another; a holder killed with SIGKILL leaves nothing that blocks.
#include "anchorctx/core/folder_lock.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "anchorctx/core/error.h"
#include "support/temp_dir.h"

namespace anchorctx::core {
namespace {

namespace fs = std::filesystem;
using anchorctx::test::TempDir;

// The message of acquire's Error ("" when it succeeds, the lock then released again).
std::string refusal(const fs::path& dir) {
  try {
    FolderLock::acquire(dir, "run folder");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FolderLock, OneHolderAtATimeInOneProcess) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "run";
  {
    const FolderLock lock = FolderLock::acquire(dir, "run folder");  // creates the folder
    EXPECT_EQ(anchorctx::test::read_file((dir / FolderLock::kFileName).string()),
              std::to_string(::getpid()) + "\n");
    const std::string why = refusal(dir);
    EXPECT_NE(why.find("in use by another anchorctx process (pid " + std::to_string(::getpid())),
              std::string::npos)
        << why;
    EXPECT_NE(why.find(dir.string()), std::string::npos) << why;
  }
  EXPECT_EQ(refusal(dir), "");  // released with the object
  FolderLock a = FolderLock::acquire(dir, "run folder");
  FolderLock b = std::move(a);  // the lock moves with the object
  EXPECT_NE(refusal(dir), "");
}

// A child process takes the lock and waits; the parent is refused with the child's pid, then
// kills the child with SIGKILL (no clean-up runs) and takes the lock at once.
TEST(FolderLock, AKilledHolderNeverBlocks) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "run";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    int status = 1;
    try {
      const FolderLock lock = FolderLock::acquire(dir, "run folder");
      status = 0;
      [[maybe_unused]] const auto n = ::write(ready[1], &status, sizeof status);
      for (;;)
        ::pause();  // until killed
    } catch (...) {
    }
    [[maybe_unused]] const auto n = ::write(ready[1], &status, sizeof status);
    ::_exit(1);
  }
  ::close(ready[1]);
  int status = -1;
  ASSERT_EQ(::read(ready[0], &status, sizeof status), static_cast<ssize_t>(sizeof status));
  ::close(ready[0]);
  ASSERT_EQ(status, 0) << "the child could not take the lock";

  const std::string why = refusal(dir);
  EXPECT_NE(why.find("(pid " + std::to_string(child) + ","), std::string::npos) << why;

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status));
  EXPECT_EQ(refusal(dir), "");  // the kernel released it with the process
}

}  // namespace
}  // namespace anchorctx::core
