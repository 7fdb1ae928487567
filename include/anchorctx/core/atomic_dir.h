// AtomicDir: a folder written under a temporary name beside its final place and renamed into
// place only when complete, so an interrupted writer never leaves a folder that looks finished.
//
// The temporary folder is `<parent>/.<name>.tmp-<pid>-<n>` (same parent: rename(2) is atomic
// within one file system). commit() fsyncs every file and the folder, renames, then fsyncs the
// parent. Without a commit the destructor removes the temporary folder; a crash leaves only a
// hidden `.tmp-` folder, never one under the final name.
#pragma once

#include <filesystem>

namespace anchorctx::core {

class AtomicDir {
 public:
  // Creates the temporary folder. Throws anchorctx::Error when `final_path` already exists
  // (unless `replace`) or the parent cannot be written. `replace` removes whatever is there at
  // commit: a caller acting on a user's --force checks the folder first (core/owned_folder.h).
  explicit AtomicDir(std::filesystem::path final_path, bool replace = false);
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  ~AtomicDir();

  // Where to write the files now.
  const std::filesystem::path& path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  bool committed() const { return committed_; }

  // Makes the folder durable and visible under its final name; a replaced folder is renamed
  // aside first and removed after, so the swap is atomic. Throws anchorctx::Error.
  void commit();

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  bool replace_ = false;
  bool committed_ = false;
};

}  // namespace anchorctx::core
