// One writer per folder: an advisory lock on `<dir>/anchorctx.lock`, held for as long as the
// FolderLock lives (a training run's whole life).
//
// The lock is flock(2) on an open file, so the kernel releases it when the process ends in any
// way (exit, crash, kill -9): a dead holder never leaves the folder stuck, and nothing has to
// guess whether a lock is stale. The holder writes its pid into the file so that a second
// process can name it. The file itself stays in the folder after release (removing it would
// let two processes lock two different files of the same name). Advisory: it binds anchorctx
// processes, which all take it before writing; it assumes the folder is not shared between
// machines over a network file system without lock support.
#pragma once

#include <filesystem>
#include <string>

namespace anchorctx::core {

class FolderLock {
 public:
  static constexpr const char* kFileName = "anchorctx.lock";

  // Creates `dir` when missing and takes its lock, or throws anchorctx::Error naming the
  // folder, the holder's pid and `what` the folder is ("run folder"). Never waits.
  static FolderLock acquire(const std::filesystem::path& dir, const std::string& what);

  FolderLock(FolderLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FolderLock& operator=(FolderLock&& other) noexcept;
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();

 private:
  explicit FolderLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace anchorctx::core
