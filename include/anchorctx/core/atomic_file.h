// AtomicFile: one file written under a temporary name beside its final place, then fsynced and
// renamed, so that readers (and a crash) see either the old file or the complete new one.
// The one-file sibling of AtomicDir (atomic_dir.h): config.json, safetensors files, indexes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace anchorctx::core {

class AtomicFile {
 public:
  // Creates `.<name>.tmp-<pid>-<n>` in the folder of `final_path` (which must exist).
  explicit AtomicFile(std::filesystem::path final_path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // without commit(): closes and removes the temporary file

  void write(std::span<const std::byte> bytes);
  void write(std::string_view text);
  // fsync, close, rename over the final path, fsync the folder. Throws anchorctx::Error.
  void commit();

  const std::filesystem::path& final_path() const { return final_; }

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  int fd_ = -1;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

}  // namespace anchorctx::core
