// AtomicFile: one file written under a temporary name beside its final place, then fsynced and
// renamed, so that readers (and a crash) see either the old file or the complete new one.
// The one-file sibling of AtomicDir (atomic_dir.h): config.json, safetensors files, indexes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace anchorctx::core {

class AtomicFile {
 public:
  // Creates `.<name>.tmp-<pid>-<n>` in the folder of `final_path` (which must exist), after
  // removing such temporaries of processes that are gone (sweep_stale_temporaries).
  explicit AtomicFile(std::filesystem::path final_path);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();  // without commit(): closes and removes the temporary file

  void write(std::span<const std::byte> bytes);
  void write(std::string_view text);
  // fsync and close the temporary file (where a full disk may still show); no more writes.
  // Throws anchorctx::Error.
  void sync();
  // sync() unless done, rename over the final path, fsync the folder. Throws anchorctx::Error.
  void commit();

  const std::filesystem::path& final_path() const { return final_; }

 private:
  std::filesystem::path final_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// Files that belong together (a report and its plots) written as a set: each is staged whole
// and synced beside its final place, and only when all are do they replace the old ones, so an
// error while writing (a full disk) leaves the old set as it was rather than new files beside
// old ones. A crash during the renames themselves can still leave a mix: POSIX has no atomic
// rename of several files.
class AtomicFileSet {
 public:
  explicit AtomicFileSet(std::filesystem::path dir) : dir_(std::move(dir)) {}

  // Stages `bytes` as `dir/name`. Throws anchorctx::Error (nothing replaced).
  void add(const std::string& name, std::string_view bytes);
  // Renames every staged file into place, in the order added, then removes those of `owned`
  // (names of files the set's writer makes) it did not stage: an older set's file must not
  // read as part of the new one. Throws anchorctx::Error.
  void commit(std::initializer_list<std::string_view> owned = {});

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<AtomicFile>> files_;
};

// Writes `text` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

// Copies the regular file `from` to `to` through an AtomicFile, so `to` is its old version or
// the whole copy (std::filesystem::copy_file wrote in place: a full disk left a truncated model
// under its final name, and its errors came as libstdc++ text). Throws anchorctx::Error naming
// the file and the system's reason.
void copy_file_atomic(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace anchorctx::core
