// AtomicDir: a folder written under a temporary name beside its final place and renamed into
// place only when complete, so an interrupted writer never leaves a folder that looks finished.
//
// The temporary folder is `<parent>/.<name>.tmp-<pid>-<n>` (same parent: rename(2) is atomic
// within one file system). commit() fsyncs every file and the folder, renames, then fsyncs the
// parent. Without a commit the destructor removes the temporary folder; a crash leaves only a
// hidden `.tmp-` folder, never one under the final name; the next AtomicDir of the same final
// name sweeps such leftovers once their process is gone (sweep_stale_temporaries).
#pragma once

#include <filesystem>
#include <string_view>

namespace anchorctx::core {

// Removes the hidden temporary folders in `dir` whose names start with `prefix` and carry
// `.tmp-<pid>-` of a process that no longer exists on this machine (a killed writer's); those
// of live processes, this one included, are left alone. Best effort: what cannot be removed
// stays. Assumes the folder is written from one machine (a pid names a process of this host).
void sweep_stale_temporaries(const std::filesystem::path& dir, std::string_view prefix);

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
